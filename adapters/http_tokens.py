"""Per-agency bearer tokens for the HTTP endpoint, kept only as a SHA-256 digest.

`mash-gateway adapter --issue-token AGENCY` prints a new random token once
and writes its digest to ``<private keys>/adapters/<agency>.http-token``
(mode 0600, refused if others can read it). Keeping the digest, not the
token, means a copy of the keys folder does not let anyone call the
endpoint; 256 random bits need no slow hash. The file is read on each
check, so issuing a new token takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import stat
from pathlib import Path

from gateway.core.errors import GatewayError
from gateway.infra.atomic import atomic_writer

SUBDIR = "adapters"
SUFFIX = ".http-token"


class TokenError(GatewayError):
    """A token file is missing or unsafe; the message names it."""


def token_file(private_keys_dir: Path, agency: str) -> Path:
    return private_keys_dir / SUBDIR / f"{agency}{SUFFIX}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(private_keys_dir: Path, agency: str) -> str:
    """A new token for ``agency``; the previous one stops working."""
    token = secrets.token_urlsafe(32)
    path = token_file(private_keys_dir, agency)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_writer(path, mode=0o600) as out:
        out.write((_digest(token) + "\n").encode("ascii"))
    return token


def expected_digest(private_keys_dir: Path, agency: str) -> str:
    path = token_file(private_keys_dir, agency)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise TokenError(
            f"{path}: no token issued; run `mash-gateway adapter --issue-token {agency}`"
        ) from None
    if mode & 0o077:
        raise TokenError(f"{path}: readable by others (mode {mode:04o}); issue a new token")
    return path.read_text(encoding="ascii").strip()


def verify(private_keys_dir: Path, agency: str, presented: str) -> bool:
    return hmac.compare_digest(_digest(presented), expected_digest(private_keys_dir, agency))
