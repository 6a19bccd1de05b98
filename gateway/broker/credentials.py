"""Per-agency RabbitMQ passwords on disk, and the broker URL an agency's edge logs in with.

`mash-gateway broker setup` writes one 0600 file per principal under
``<private keys>/broker/``; an edge that finds its agency's file logs in as
that agency's user, which may only publish to ingress and consume its own
inbox. Without the file (the demo, the tests) the edge uses the area's
broker URL as it is.
"""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gateway.broker.definitions import agency_user
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


def agency_broker_url(config: AreaConfig, agency: str) -> str:
    """The agency's own login if `broker setup` issued one, else the area's broker URL."""
    password = kept_password(password_file(default_credentials_dir(config), agency))
    if password is None:
        return config.broker_url
    vhost = unquote(urlsplit(config.broker_url).path.lstrip("/")) or "/"
    user = agency_user(agency, config.broker_user_prefix)
    return vhost_url(config.broker_url, vhost, Credentials(user, password))
