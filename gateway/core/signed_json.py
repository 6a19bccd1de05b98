"""Detached Ed25519 signatures over canonical JSON: the documents hosts hand each other.

Canonical: sorted keys, no spaces, so the bytes signed are the bytes read
back. The signature is stored beside the document as base64 and a newline.
Used by partner bundles and key registrations (partner_documents.py) and
the signed area directory (area_directory.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core.errors import GatewayError


class SignatureInvalid(GatewayError):
    """A document whose detached signature does not verify with the expected key."""


class MalformedDocument(GatewayError):
    """Not JSON, not an object, or not of the format expected."""


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def fingerprint(document: bytes) -> str:
    """What two people read to each other: the first 128 bits of SHA-256, in groups of four."""
    digest = hashlib.sha256(document).hexdigest()[:32]
    return " ".join(digest[i : i + 4] for i in range(0, 32, 4))


def sign(document: bytes, key: Ed25519PrivateKey) -> bytes:
    """The detached signature, base64 with a newline, as it is stored beside the document."""
    return base64.b64encode(key.sign(document)) + b"\n"


def check_signature(document: bytes, signature: bytes, key: Ed25519PublicKey, what: str) -> None:
    try:
        key.verify(base64.b64decode(signature.strip(), validate=True), document)
    except (InvalidSignature, ValueError):
        raise SignatureInvalid(f"{what}: signature does not verify") from None


def parse_object(document: bytes, expected_format: str, what: str) -> dict[str, Any]:
    """The document's fields, once it is a JSON object of ``expected_format``."""
    try:
        fields = json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedDocument(f"{what}: not JSON ({exc})") from None
    if not isinstance(fields, dict) or fields.get("format") != expected_format:
        raise MalformedDocument(f"{what}: not a {expected_format} document")
    return fields
