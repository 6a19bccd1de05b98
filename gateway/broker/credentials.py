"""Per-principal RabbitMQ passwords on disk, and the login each service uses.

`mash-gateway broker setup` writes one 0600 file per principal under
``<private keys>/broker/``. A service that finds its principal's file logs
in as that principal's user: an agency's edge (adapters, the intake, send
and inbox), which may only publish to ingress and consume its own inbox;
the router and its escalator as the gateway principal's user, which may
only consume the agencies' ingress queues and publish deliveries, events and
quarantined copies. Without the file (the demo, the tests) a service uses
the area's broker URL as it is, and the router then declares the topology
itself (topology.py says why only then).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gateway.broker.definitions import QUARANTINE_KEEPER, agency_user
from gateway.broker.vhost import Credentials, vhost_url
from gateway.config.area_config import AreaConfig
from gateway.core.errors import GatewayError

CREDENTIALS_SUBDIR = "broker"
PASSWORD_SUFFIX = ".password"  # noqa: S105 (a file name, not a password)


class CredentialsError(GatewayError):
    """A password file cannot be trusted or written; the message names the file."""


def default_credentials_dir(config: AreaConfig) -> Path:
    return config.private_keys_dir / CREDENTIALS_SUBDIR


def password_file(directory: Path, principal: str) -> Path:
    return directory / f"{principal}{PASSWORD_SUFFIX}"


def kept_password(path: Path) -> str | None:
    """The password already issued in ``path``, if any; refuses a file others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_IMODE(mode) & 0o077:
        raise CredentialsError(
            f"{path}: readable by others (mode {stat.S_IMODE(mode):04o}); the password may have "
            "leaked: rerun `mash-gateway broker setup --rotate-passwords`"
        )
    password = path.read_text(encoding="utf-8").strip()
    if not password:
        raise CredentialsError(f"{path}: empty password file; rerun with --rotate-passwords")
    return password


@dataclass(frozen=True)
class Login:
    """The URL a principal's service connects with, and whether it is the principal's own user."""

    url: str
    own: bool  # False: the area's broker URL as it is (no password file: the demo, the tests)


def principal_login(config: AreaConfig, principal: str) -> Login:
    """The principal's own user if `broker setup` issued it a password, else the area's URL."""
    password = kept_password(password_file(default_credentials_dir(config), principal))
    if password is None:
        return Login(config.broker_url, own=False)
    vhost = unquote(urlsplit(config.broker_url).path.lstrip("/")) or "/"
    user = agency_user(principal, config.broker_user_prefix)
    return Login(vhost_url(config.broker_url, vhost, Credentials(user, password)), own=True)


def agency_broker_url(config: AreaConfig, agency: str) -> str:
    """The URL an agency's edge logs in with."""
    return principal_login(config, agency).url


def router_login(config: AreaConfig) -> Login:
    """The router's (and its escalator's) login: the gateway principal's user."""
    return principal_login(config, config.gateway)


def keeper_login(config: AreaConfig) -> Login:
    """The quarantine keeper's login: its own user (read quarantine, write ingress)."""
    return principal_login(config, QUARANTINE_KEEPER)
