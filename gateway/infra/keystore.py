"""Private keys on disk, and the public half appended to gateway.toml.

The shell around the registry: it generates key pairs, writes private keys
with mode 0600 (created that way, never chmod-ed after the fact, so there is
no window where they are readable), refuses to load a private key that group
or others can read, and appends ``[[keys]]`` / ``[[revocations]]`` blocks to
the config so key history is append-only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.config.area_config import AreaConfig
from gateway.core.envelope import DecryptionIdentity, SigningIdentity, SigningKeys
from gateway.core.errors import GatewayError
from gateway.core.registry import KeyUse, PublicKeyRecord, key_id_for

DEFAULT_VALIDITY = timedelta(days=365)
PRIVATE_MODE = 0o600


class KeyStoreError(GatewayError):
    """A private key is missing, unreadable, too widely readable, or of the wrong type."""


@dataclass(frozen=True)
class NewKey:
    record: PublicKeyRecord
    private_path: Path


def private_key_path(keys_dir: Path, key_id: str) -> Path:
    return keys_dir / f"{key_id}.key"


def generate(
    keys_dir: Path,
    agency: str,
    use: KeyUse,
    now: datetime,
    validity: timedelta = DEFAULT_VALIDITY,
    *,
    intake: bool = False,
) -> NewKey:
    """Create a key pair: the private key goes to ``keys_dir`` (0600); return the public record.

    ``intake``: a signing key of the secure-mail intake for ``agency`` (core/registry.py).
    """
    private: Ed25519PrivateKey | X25519PrivateKey = (
        Ed25519PrivateKey.generate() if use is KeyUse.SIGN else X25519PrivateKey.generate()
    )
    raw = private.public_key().public_bytes_raw()
    record = PublicKeyRecord(
        key_id_for(agency, use, raw), agency, use, raw, now, now + validity, intake=intake
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = private_key_path(keys_dir, record.key_id)
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return NewKey(record, path)


def key_block(record: PublicKeyRecord) -> str:
    """The ``[[keys]]`` TOML block for a public key record."""
    return (
        "\n[[keys]]\n"
        f'agency = "{record.agency}"\n'
        f'use = "{record.use.value}"\n'
        f'key_id = "{record.key_id}"\n'
        f'public = "{record.public_b64}"\n'
        f"not_before = {_toml_instant(record.not_before)}\n"
        f"expires = {_toml_instant(record.expires)}\n"
        + ("intake = true\n" if record.intake else "")
    )


def revocation_block(key_id: str, at: datetime, reason: str) -> str:
    escaped = reason.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return (
        "\n[[revocations]]\n"
        f'key_id = "{key_id}"\n'
        f"revoked_at = {_toml_instant(at)}\n"
        f'reason = "{escaped}"\n'
    )


def _toml_instant(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def append_to_config(config_path: Path, block: str) -> None:
    with config_path.open("a", encoding="utf-8") as handle:
        handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())


def _read_private(keys_dir: Path, key_id: str) -> bytes:
    path = private_key_path(keys_dir, key_id)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyStoreError(f"{path}: private key for {key_id} not found") from None
    if stat.S_IMODE(mode) & 0o077:
        raise KeyStoreError(
            f"{path}: private key is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {path}"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read private key: {exc.strerror}") from None


def _private_key(keys_dir: Path, key_id: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(_read_private(keys_dir, key_id), password=None)
    except (ValueError, TypeError) as exc:
        path = private_key_path(keys_dir, key_id)
        raise KeyStoreError(f"{path}: not a readable private key: {exc}") from None


def load_signing_identity(config: AreaConfig, agency: str, now: datetime) -> SigningIdentity:
    """The agency's current signing key: the newest one valid at ``now``."""
    record = config.registry.current_key(agency, KeyUse.SIGN, now)
    private = _private_key(config.private_keys_dir, record.key_id)
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyStoreError(f"{record.key_id}: private key is not an Ed25519 key")
    return SigningIdentity(agency, record.key_id, private)


def load_signing_keys(
    config: AreaConfig, agency: str, now: datetime, *, intake: bool = False
) -> SigningKeys:
    """Every signing private key of the agency's edge (or, with ``intake``, of the secure-mail
    intake for it) found on disk that may still come into use.

    Revoked and expired keys are skipped (neither ever signs again); a key not
    yet valid is kept for when it is; a key of the other role is never loaded,
    even when its file is here. Which one signs is the registry's choice
    at each message (``SigningKeys.signer``). None found is not an error here:
    an edge that only receives needs none, and one that sends is refused per
    message, naming the key.
    """
    found: dict[str, Ed25519PrivateKey] = {}
    for record in config.registry.keys_of(agency):
        if record.use is not KeyUse.SIGN or record.intake is not intake:
            continue
        if record.revoked_at is not None:
            continue
        if now >= record.expires:
            continue
        if not private_key_path(config.private_keys_dir, record.key_id).exists():
            continue
        private = _private_key(config.private_keys_dir, record.key_id)
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyStoreError(f"{record.key_id}: private key is not an Ed25519 key")
        found[record.key_id] = private
    return SigningKeys(agency, found, intake)


def load_decryption_identity(config: AreaConfig, agency: str) -> DecryptionIdentity:
    """Every encryption private key of the agency found on disk, rotated ones included.

    Revoked or expired encryption keys still decrypt what was sealed to them
    earlier; the registry stops senders from sealing to them.
    """
    found: dict[str, X25519PrivateKey] = {}
    for record in config.registry.keys_of(agency):
        if record.use is not KeyUse.ENCRYPT:
            continue
        if not private_key_path(config.private_keys_dir, record.key_id).exists():
            continue
        private = _private_key(config.private_keys_dir, record.key_id)
        if not isinstance(private, X25519PrivateKey):
            raise KeyStoreError(f"{record.key_id}: private key is not an X25519 key")
        found[record.key_id] = private
    if not found:
        raise KeyStoreError(
            f"no encryption private key for {agency!r} in {config.private_keys_dir}"
        )
    return DecryptionIdentity(agency, found)
