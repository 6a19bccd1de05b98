"""`mash-gateway broker setup|export-definitions`: the area's RabbitMQ vhost, topology and users.

Every principal gets its own RabbitMQ user, named ``<prefix><principal id>``,
the prefix being the area's (``[broker].user_prefix``, by default
``mash-<area id>-``), so areas sharing a broker never share a user: each
agency may publish to its own ingress exchange and consume its own inbox, nothing
else; the gateway principal's user, the router's and its escalator's, may
consume the agencies' ingress queues and publish deliveries, events and quarantined
copies, nothing else (gateway/broker/definitions.py holds the rules, and why
setup, not the router, declares the topology). ``[broker].url`` is then only
setup's own login, an administrator's.

Passwords:
- are random, and are written, before the broker hears of them, to one 0600
  file per principal, ``<credentials dir>/<principal id>.password`` (the
  password alone, on one line), so a crash between the two steps never loses
  a password the broker already uses;
- are never printed;
- are never reset by a re-run: an existing user keeps its password (setup
  checks that the one in its file still opens it), a deleted one is created
  again with the password in its file, and only ``--rotate-passwords``
  replaces them. A user setup cannot prove is this area's (permissions on
  another vhost, or no password file here) is refused before anything
  changes (definitions.login_step).

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

from gateway.broker.connection import BrokerUnavailable, connect, safe_url
from gateway.broker.credentials import (
    default_credentials_dir,
    kept_password,
    password_file,
)
from gateway.broker.definitions import (
    Grant,
    Step,
    UserCollision,
    agency_user,
    definitions,
    grants,
    login_step,
    password_hash,
)
from gateway.broker.topology import Limits, declare
from gateway.broker.vhost import BrokerAdmin, Credentials, admin_for, new_password, vhost_url
from gateway.cli import init_cmd
from gateway.config.area_config import (
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


class LoginRefused(GatewayError):
    """A password file does not open its user; the message names both and the fix."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "broker", help="set up RabbitMQ (vhost, topology, per-principal users) or export it"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    setup = actions.add_parser(
        "setup",
        help="create the vhost, declare the topology and give each principal its own user",
    )
    _vhost_option(setup)
    setup.add_argument(
        "--credentials-dir",
        type=Path,
        help="where the 0600 password files go (default: <private keys dir>/broker)",
    )
    setup.add_argument(
        "--rotate-passwords",
        action="store_true",
        help="give every user of this area a new password (default: existing users keep theirs)",
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
    _vhost_option(export)
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.add_argument(
        "--demo",
        action="store_true",
        help="export the demo area's definitions (as `mash-gateway init` writes it); "
        "no config needed",
    )
    export.set_defaults(handler=run_export)


def _vhost_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vhost", help="default: the vhost of the config's broker URL")


def url_vhost(url: str) -> str:
    """The vhost an AMQP URL names; no path, or a bare ``/``, is the default vhost ``/``."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def area_grants(config: AreaConfig) -> list[Grant]:
    return grants(config.gateway, config.inbox_agencies, config.broker_user_prefix)


def area_definitions(
    config: AreaConfig, vhost: str, password_hashes: dict[str, str] | None = None
) -> dict[str, Any]:
    return definitions(
        vhost,
        config.gateway,
        config.inbox_agencies,
        Limits(),
        config.broker_user_prefix,
        password_hashes=password_hashes,
    )


def definitions_text(doc: dict[str, Any]) -> str:
    """Stable JSON text, so a regenerated file diffs cleanly against the committed one."""
    return json.dumps(doc, indent=2) + "\n"


def write_text(path: Path, text: str, mode: int) -> None:
    with atomic_writer(path, mode) as out:
        out.write(text.encode("utf-8"))


def new_password_file(path: Path) -> str:
    """A new password, written to ``path`` before the broker hears of it."""
    password = new_password()
    write_text(path, password + "\n", PRIVATE_MODE)
    return password


def _credentials_dir(config: AreaConfig, explicit: Path | None) -> Path:
    directory = explicit or default_credentials_dir(config)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


@dataclass(frozen=True)
class Planned:
    grant: Grant
    step: Step
    path: Path
    kept: str | None


async def plan_logins(
    admin: BrokerAdmin, config: AreaConfig, vhost: str, credentials_dir: Path, rotate: bool
) -> list[Planned]:
    """What setup will do to each user, decided before anything changes.

    Raises UserCollision naming every user that may be another area's.
    """
    owner = urlsplit(config.broker_url).username or "guest"
    existing = await admin.users()  # one call: rabbitmqctl takes seconds a call
    planned, problems = [], []
    for grant in area_grants(config):
        if grant.user == owner:
            problems.append(
                f"[broker].url logs in as {owner}, the {grant.principal} principal's own user: "
                "point it at an administrator (the services find their logins in the password "
                "files)"
            )
            continue
        path = password_file(credentials_dir, grant.principal)
        kept = kept_password(path)
        try:
            on_broker = await admin.user_vhosts(grant.user) if grant.user in existing else None
            step = login_step(grant.user, vhost, on_broker, kept is not None, rotate)
        except UserCollision as exc:
            problems.append(str(exc))
            continue
        planned.append(Planned(grant, step, path, kept))
    if problems:
        raise UserCollision("broker setup changed nothing:\n  " + "\n  ".join(problems))
    return planned


async def apply_login(admin: BrokerAdmin, vhost: str, login: Planned) -> tuple[str, str]:
    """Create, keep or rotate one user's password and set its permissions; (password, what)."""
    user = login.grant.user
    if login.step is Step.KEEP:
        assert login.kept is not None  # login_step keeps only a user whose password is kept
        password, what = login.kept, "password kept"
    elif login.step is Step.CREATE:
        password = login.kept or new_password_file(login.path)
        await admin.add_user(user, password)
        what = "created with its kept password" if login.kept else "created, new password"
    else:
        password = new_password_file(login.path)
        await admin.change_password(user, password)
        what = "new password"
    await admin.set_permissions(vhost, user, login.grant.permissions)
    return password, what


async def check_logins(config: AreaConfig, vhost: str, logins: dict[Planned, str]) -> None:
    """Log in as every user with the password in its file: a kept one may have been changed."""
    refused = []
    for login, password in logins.items():
        url = vhost_url(config.broker_url, vhost, Credentials(login.grant.user, password))
        try:
            connection = await connect(url, config.broker_tls)
        except BrokerUnavailable:
            refused.append(f"{login.grant.user}: the password in {login.path} does not open it")
            continue
        await connection.close()
    if refused:
        raise LoginRefused(
            "\n  ".join(refused) + "\n(changed on the broker, or its definitions imported "
            "again): rerun with --rotate-passwords to give every user of this area a new one"
        )


async def setup(
    config: AreaConfig, vhost: str, credentials_dir: Path, rotate: bool
) -> dict[str, str]:
    """Vhost, topology and users; returns each user's password (for the export's hashes only)."""
    admin = await admin_for(config.broker_url)
    planned = await plan_logins(admin, config, vhost, credentials_dir, rotate)
    owner = urlsplit(config.broker_url).username or "guest"
    await admin.create_vhost(vhost, owner)
    url = vhost_url(config.broker_url, vhost)
    print(f"vhost {vhost!r} ready; {owner} may configure it")

    connection = await connect(url, config.broker_tls)
    async with connection:
        wanted = await declare(await connection.channel(), config.inbox_agencies, Limits())
    print(
        f"topology declared on {safe_url(url)}: {len(wanted.exchanges)} exchanges, "
        f"{len(wanted.queues)} queues, {len(wanted.bindings)} bindings"
    )

    passwords: dict[Planned, str] = {}
    for login in planned:
        passwords[login], what = await apply_login(admin, vhost, login)
        print(f"user {login.grant.user} ({login.grant.principal}): {what}, in {login.path}")
    await check_logins(config, vhost, passwords)
    print(f"every user logs in with the password in its file, on vhost {vhost!r}")
    return {login.grant.user: password for login, password in passwords.items()}


def run_setup(args: argparse.Namespace) -> int:
    if args.with_password_hashes and args.export is None:
        raise GatewayError("--with-password-hashes only applies with --export FILE")
    config = load_config(args.config)
    vhost = args.vhost or url_vhost(config.broker_url)
    credentials_dir = _credentials_dir(config, args.credentials_dir)
    passwords = asyncio.run(setup(config, vhost, credentials_dir, args.rotate_passwords))
    if args.export is not None:
        hashes = None
        if args.with_password_hashes:
            hashes = {u: password_hash(p, secrets.token_bytes(4)) for u, p in passwords.items()}
        doc = area_definitions(config, vhost, hashes)
        write_text(args.export, definitions_text(doc), PRIVATE_MODE if hashes else PUBLIC_MODE)
        secret = " (with password hashes: keep it secret)" if hashes else ""
        print(f"definitions written to {args.export}{secret}")
    print(
        "the router logs in as "
        f"{agency_user(config.gateway, config.broker_user_prefix)}, each agency's edge as "
        f"{config.broker_user_prefix}<agency>, each with the password in its file; "
        "[broker].url is only setup's administrator login"
    )
    return 0


def demo_area_config() -> AreaConfig:
    """The demo area as `mash-gateway init` writes it; keys and dates do not affect the broker."""
    text = demo_config(init_cmd.DEFAULT_BROKER_URL, utc_now().date())
    return parse_config(text, Path(DEFAULT_CONFIG_NAME).resolve())


def run_export(args: argparse.Namespace) -> int:
    config = demo_area_config() if args.demo else load_config(args.config)
    vhost = args.vhost or url_vhost(config.broker_url)
    doc = area_definitions(config, vhost)
    write_text(args.output, definitions_text(doc), PUBLIC_MODE)
    print(
        f"definitions for vhost {vhost!r} written to {args.output}: {len(doc['users'])} users "
        "without passwords (set them at deploy time with `mash-gateway broker setup` or "
        "`rabbitmqctl change_password`)"
    )
    return 0
