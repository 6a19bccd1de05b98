"""The signed area directory: who is in the area, their keys, revocations and agreements.

X-Road's global configuration is the model: one document, versioned, signed
by the area's gateway principal (``mash-gateway directory publish`` at the
hub), carried to every router and edge, which verify it and apply it without
a restart. A host accepts a directory only when:
- it is for its own area;
- its version is newer than the one it holds (an older one, however
  genuine, would bring back a revoked key: a rollback);
- it is signed by a gateway signing key of the registry the host holds now,
  valid when the directory was issued (a directory cannot vouch for itself,
  so a forged one cannot slip in a gateway key of its own).

The content is the TOML text of the config's directory tables
(config/toml_tables.py), so it is parsed by the one config parser.
Pure: bytes and values in, values out; the caller supplies the key lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.core.errors import GatewayError
from gateway.core.registry import KeyRejected
from gateway.core.signed_json import (
    MalformedDocument,
    SignatureInvalid,
    canonical,
    check_signature,
    parse_object,
)

FORMAT = "mash-area-directory/1"


class Refusal(StrEnum):
    """Why a directory was refused; the metric's label."""

    MALFORMED = "malformed"
    AREA = "area"
    NOT_NEWER = "not-newer"
    SIGNER = "signer"
    SIGNATURE = "signature"
    INVALID = "invalid"  # signed, but its tables do not make a valid config with the host's


class DirectoryRefused(GatewayError):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclass(frozen=True)
class Directory:
    area: str
    version: int
    issued_at: datetime
    signer_key_id: str
    tables: str  # TOML: [[agencies]], [[keys]], [[revocations]], [[agreements]]


def directory_bytes(directory: Directory) -> bytes:
    return canonical(
        {
            "format": FORMAT,
            "area": directory.area,
            "version": directory.version,
            "issued_at": directory.issued_at.isoformat(),
            "signer_key_id": directory.signer_key_id,
            "tables": directory.tables,
        }
    )


def stored(document: bytes, signature: bytes) -> bytes:
    """One file for both, so a crash cannot leave a document beside another's signature."""
    return signature.strip() + b"\n" + document


def from_stored(data: bytes) -> tuple[bytes, bytes]:
    """(document, signature) from ``stored``'s bytes."""
    signature, _, document = data.partition(b"\n")
    return document, signature


def accept(
    document: bytes,
    signature: bytes,
    *,
    area: str,
    held_version: int,
    gateway_key: Callable[[str, datetime], Ed25519PublicKey],
) -> Directory:
    """The directory, if it may replace the one held at ``held_version``; else DirectoryRefused.

    ``gateway_key(key_id, at)`` is the held registry's gateway signing key, or
    raises KeyRejected.
    """
    directory = _parse(document)
    if directory.area != area:
        raise DirectoryRefused(Refusal.AREA, f"directory for area {directory.area!r}, not {area!r}")
    if directory.version <= held_version:
        raise DirectoryRefused(
            Refusal.NOT_NEWER,
            f"directory version {directory.version} is not newer than {held_version}, held",
        )
    try:
        key = gateway_key(directory.signer_key_id, directory.issued_at)
    except KeyRejected as exc:
        raise DirectoryRefused(Refusal.SIGNER, f"directory signer: {exc}") from None
    try:
        check_signature(document, signature, key, f"directory version {directory.version}")
    except SignatureInvalid as exc:
        raise DirectoryRefused(Refusal.SIGNATURE, str(exc)) from None
    return directory


def _parse(document: bytes) -> Directory:
    try:
        fields = parse_object(document, FORMAT, "directory")
        version = fields.get("version")
        tables = fields.get("tables")
        if not isinstance(version, int) or version < 1 or not isinstance(tables, str):
            raise MalformedDocument("directory: version or tables missing")
        return Directory(
            area=str(fields.get("area")),
            version=version,
            issued_at=datetime.fromisoformat(str(fields.get("issued_at"))),
            signer_key_id=str(fields.get("signer_key_id")),
            tables=tables,
        )
    except (GatewayError, ValueError) as exc:
        raise DirectoryRefused(Refusal.MALFORMED, f"not a directory: {exc}") from None
