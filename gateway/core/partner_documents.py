"""The two documents a partner agency's host exchanges with the hub, signed, as bytes.

- A bundle manifest (``partner export``): the agency, the area, and the
  SHA-256 of every file in the bundle, signed by the area's gateway principal.
  ``partner import`` refuses a bundle whose files differ from it, and prints
  the signer's fingerprint for the partner to compare with the hub by phone:
  the bundle carries the gateway's public key itself, so only that out-of-band
  comparison makes the signature mean anything (X-Road's anchor works so).
- A key registration (``partner request`` / ``partner register``): the public
  keys a partner generated on its own host, signed by the signing key among
  them (proof that it holds the private half). The hub accepts it only when
  its operator types the fingerprint the partner read out.

Pure: values in, bytes out; no files, no clock. Both are signed canonical
JSON (core/signed_json.py).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.core.errors import GatewayError
from gateway.core.registry import KeyUse, PublicKeyRecord, key_id_for
from gateway.core.signed_json import canonical, check_signature, parse_object

MANIFEST_FORMAT = "mash-partner-bundle/1"
REGISTRATION_FORMAT = "mash-key-registration/1"


class PartnerDocumentError(GatewayError):
    """A manifest or registration with a field missing, or a key that is not what it says."""


@dataclass(frozen=True)
class Manifest:
    area: str
    agency: str
    exported_at: datetime
    signer_key_id: str  # the gateway principal's signing key
    files: dict[str, str]  # relative path -> SHA-256 hex


@dataclass(frozen=True)
class Registration:
    area: str
    agency: str
    signer_key_id: str
    keys: tuple[PublicKeyRecord, ...]


def manifest_bytes(manifest: Manifest) -> bytes:
    return canonical(
        {
            "format": MANIFEST_FORMAT,
            "area": manifest.area,
            "agency": manifest.agency,
            "exported_at": manifest.exported_at.isoformat(),
            "signer_key_id": manifest.signer_key_id,
            "files": manifest.files,
        }
    )


def parse_manifest(document: bytes) -> Manifest:
    fields = parse_object(document, MANIFEST_FORMAT, "manifest")
    files = fields.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise PartnerDocumentError("manifest: files must map paths to SHA-256 digests")
    try:
        exported_at = datetime.fromisoformat(_text(fields, "exported_at", "manifest"))
    except ValueError:
        raise PartnerDocumentError("manifest: exported_at is not an ISO 8601 instant") from None
    return Manifest(
        area=_text(fields, "area", "manifest"),
        agency=_text(fields, "agency", "manifest"),
        exported_at=exported_at,
        signer_key_id=_text(fields, "signer_key_id", "manifest"),
        files=dict(files),
    )


def registration_bytes(registration: Registration) -> bytes:
    return canonical(
        {
            "format": REGISTRATION_FORMAT,
            "area": registration.area,
            "agency": registration.agency,
            "signer_key_id": registration.signer_key_id,
            "keys": [
                {
                    "key_id": k.key_id,
                    "use": k.use.value,
                    "public": k.public_b64,
                    "not_before": k.not_before.isoformat(),
                    "expires": k.expires.isoformat(),
                }
                for k in registration.keys
            ],
        }
    )


def parse_registration(document: bytes, signature: bytes) -> Registration:
    """The registration, once its self-signature and every key id check out."""
    fields = parse_object(document, REGISTRATION_FORMAT, "registration")
    agency = _text(fields, "agency", "registration")
    entries = fields.get("keys")
    if not isinstance(entries, list) or not entries:
        raise PartnerDocumentError("registration: keys must be a non-empty list")
    keys = tuple(_key_record(entry, agency, n) for n, entry in enumerate(entries))
    signer_key_id = _text(fields, "signer_key_id", "registration")
    signer = next((k for k in keys if k.key_id == signer_key_id), None)
    if signer is None or signer.use is not KeyUse.SIGN:
        raise PartnerDocumentError(
            f"registration: signer {signer_key_id} is not one of its own signing keys"
        )
    check_signature(
        document, signature, Ed25519PublicKey.from_public_bytes(signer.raw), "registration"
    )
    return Registration(_text(fields, "area", "registration"), agency, signer_key_id, keys)


def _key_record(entry: Any, agency: str, n: int) -> PublicKeyRecord:
    where = f"registration: keys[{n}]"
    if not isinstance(entry, dict):
        raise PartnerDocumentError(f"{where}: not an object")
    try:
        use = KeyUse(_text(entry, "use", where))
        raw = base64.b64decode(_text(entry, "public", where), validate=True)
        not_before = datetime.fromisoformat(_text(entry, "not_before", where))
        expires = datetime.fromisoformat(_text(entry, "expires", where))
    except ValueError as exc:
        raise PartnerDocumentError(f"{where}: {exc}") from None
    if len(raw) != 32:
        raise PartnerDocumentError(f"{where}: a public key is 32 bytes, not {len(raw)}")
    key_id = _text(entry, "key_id", where)
    if key_id != key_id_for(agency, use, raw):
        raise PartnerDocumentError(f"{where}: key id {key_id} does not match its public key")
    return PublicKeyRecord(key_id, agency, use, raw, not_before, expires)


def _text(fields: dict[str, Any], name: str, what: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise PartnerDocumentError(f"{what}: {name} is missing or not text")
    return value
