"""`mash-gateway broker setup|export-definitions`: the area's RabbitMQ vhost, topology and users.

Every principal gets its own RabbitMQ user, named ``<prefix><agency id>``:
each agency may publish to the ingress exchange and consume its own inbox,
nothing else; the gateway principal may do everything in the vhost
(gateway/broker/definitions.py holds the rules).

Passwords:
- are random, and are written, before the broker hears of them, to one 0600
  file per principal, ``<credentials dir>/<agency id>.password`` (the
  password alone, on one line), so a crash between the two steps never loses
  a password the broker already uses;
- are never printed;
- are kept across runs: the file is the source of truth, so re-running setup
  re-applies the same password and permissions (and heals a deleted user).
  ``--rotate-passwords`` replaces them all.

Exported definitions carry no password hash unless ``--with-password-hashes``
is given (setup only, where the passwords are known); such a file is a secret
and is written 0600.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.broker.connection import connect, safe_url
from gateway.broker.credentials import (
    default_credentials_dir,
    kept_password,
    password_file,
)
from gateway.broker.definitions import (
    GATEWAY_PERMISSIONS,
    Permissions,
    agency_permissions,
    agency_user,
    definitions,
    password_hash,
)
from gateway.broker.topology import Limits, declare
from gateway.broker.vhost import admin_for, new_password, vhost_url
from gateway.cli import init_cmd
from gateway.config.area_config import (
    AGENCY_USER_PREFIX,
    DEFAULT_CONFIG_NAME,
    AreaConfig,
    load_config,
    parse_config,
)
from gateway.core.errors import GatewayError
from gateway.demo.area import demo_config
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class Grant:
    """One principal's RabbitMQ user and what it may do."""

    principal: str
    user: str
    permissions: Permissions


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "broker", help="set up RabbitMQ (vhost, topology, per-agency users) or export it"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    setup = actions.add_parser(
        "setup",
        help="create the vhost, declare the topology and give each agency its own user",
    )
    _common_options(setup)
    setup.add_argument(
        "--credentials-dir",
        type=Path,
        help="where the 0600 password files go (default: <private keys dir>/broker)",
    )
    setup.add_argument(
        "--rotate-passwords",
        action="store_true",
        help="give every user a new password (default: keep the ones already issued)",
    )
    setup.add_argument(
        "--export", type=Path, metavar="FILE", help="also write the RabbitMQ definitions JSON"
    )
    setup.add_argument(
        "--with-password-hashes",
        action="store_true",
        help="put the users' password hashes in --export FILE (the file is then a secret, 0600)",
    )
    setup.set_defaults(handler=run_setup)

    export = actions.add_parser(
        "export-definitions",
        help="write the RabbitMQ definitions JSON (topology, users, permissions; no passwords)",
    )
    _common_options(export)
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.add_argument(
        "--demo",
        action="store_true",
        help="export the demo area's definitions (as `mash-gateway init` writes it); "
        "no config needed",
    )
    export.set_defaults(handler=run_export)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vhost", help="default: the vhost of the config's broker URL")
    parser.add_argument(
        "--user-prefix",
        help="prefix of the RabbitMQ user names (default: [broker].user_prefix, else "
        f"{AGENCY_USER_PREFIX}); give each area its own when several share one broker",
    )


def url_vhost(url: str) -> str:
    """The vhost an AMQP URL names; no path, or a bare ``/``, is the default vhost ``/``."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def grants(config: AreaConfig, prefix: str) -> list[Grant]:
    """The gateway's user first, then one per agency, as definitions() lists them."""
    return [Grant(config.gateway, agency_user(config.gateway, prefix), GATEWAY_PERMISSIONS)] + [
        Grant(a, agency_user(a, prefix), agency_permissions(a)) for a in config.inbox_agencies
    ]


def area_definitions(
    config: AreaConfig, vhost: str, prefix: str, password_hashes: dict[str, str] | None = None
) -> dict[str, Any]:
    return definitions(
        vhost,
        config.inbox_agencies,
        Limits(),
        password_hashes=password_hashes,
        user_prefix=prefix,
        gateway_user=agency_user(config.gateway, prefix),
    )


def definitions_text(doc: dict[str, Any]) -> str:
    """Stable JSON text, so a regenerated file diffs cleanly against the committed one."""
    return json.dumps(doc, indent=2) + "\n"


def write_text(path: Path, text: str, mode: int) -> None:
    with atomic_writer(path, mode) as out:
        out.write(text.encode("utf-8"))


def issue_password(path: Path, rotate: bool) -> tuple[str, bool]:
    """The password kept in ``path``, or a new one written there first; True if new."""
    kept = None if rotate else kept_password(path)
    if kept is not None:
        return kept, False
    password = new_password()
    write_text(path, password + "\n", PRIVATE_MODE)
    return password, True


def _credentials_dir(config: AreaConfig, explicit: Path | None) -> Path:
    directory = explicit or default_credentials_dir(config)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


async def setup(
    config: AreaConfig, vhost: str, credentials_dir: Path, prefix: str, rotate: bool
) -> dict[str, str]:
    """Vhost, topology and users; returns each user's password (for the export's hashes only)."""
    admin = await admin_for(config.broker_url)
    owner = urlsplit(config.broker_url).username or "guest"
    await admin.create_vhost(vhost, owner)
    url = vhost_url(config.broker_url, vhost)
    print(f"vhost {vhost!r} ready; {owner} may configure it")

    connection = await connect(url)
    async with connection:
        wanted = await declare(await connection.channel(), config.inbox_agencies, Limits())
    print(
        f"topology declared on {safe_url(url)}: {len(wanted.exchanges)} exchanges, "
        f"{len(wanted.queues)} queues, {len(wanted.bindings)} bindings"
    )

    passwords: dict[str, str] = {}
    for grant in grants(config, prefix):
        path = password_file(credentials_dir, grant.principal)
        password, fresh = issue_password(path, rotate)
        await admin.set_user(grant.user, password)
        await admin.set_permissions(vhost, grant.user, grant.permissions)
        passwords[grant.user] = password
        how = "new password" if fresh else "password kept"
        print(f"user {grant.user} ({grant.principal}): {how}, in {path}")
    return passwords


def run_setup(args: argparse.Namespace) -> int:
    if args.with_password_hashes and args.export is None:
        raise GatewayError("--with-password-hashes only applies with --export FILE")
    config = load_config(args.config)
    args.user_prefix = args.user_prefix or config.broker_user_prefix
    vhost = args.vhost or url_vhost(config.broker_url)
    credentials_dir = _credentials_dir(config, args.credentials_dir)
    passwords = asyncio.run(
        setup(config, vhost, credentials_dir, args.user_prefix, args.rotate_passwords)
    )
    if args.export is not None:
        hashes = None
        if args.with_password_hashes:
            hashes = {u: password_hash(p, secrets.token_bytes(4)) for u, p in passwords.items()}
        doc = area_definitions(config, vhost, args.user_prefix, hashes)
        write_text(args.export, definitions_text(doc), PRIVATE_MODE if hashes else PUBLIC_MODE)
        secret = " (with password hashes: keep it secret)" if hashes else ""
        print(f"definitions written to {args.export}{secret}")
    print(
        "adapters log in as their user with the password in its file; point the router's "
        f"[broker].url at {agency_user(config.gateway, args.user_prefix)}"
    )
    return 0


def demo_area_config() -> AreaConfig:
    """The demo area as `mash-gateway init` writes it; keys and dates do not affect the broker."""
    text = demo_config(init_cmd.DEFAULT_BROKER_URL, utc_now().date())
    return parse_config(text, Path(DEFAULT_CONFIG_NAME).resolve())


def run_export(args: argparse.Namespace) -> int:
    config = demo_area_config() if args.demo else load_config(args.config)
    args.user_prefix = args.user_prefix or config.broker_user_prefix
    vhost = args.vhost or url_vhost(config.broker_url)
    doc = area_definitions(config, vhost, args.user_prefix)
    write_text(args.output, definitions_text(doc), PUBLIC_MODE)
    print(
        f"definitions for vhost {vhost!r} written to {args.output}: {len(doc['users'])} users "
        "without passwords (set them at deploy time with `mash-gateway broker setup` or "
        "`rabbitmqctl change_password`)"
    )
    return 0
