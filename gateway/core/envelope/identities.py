"""The keys an edge holds (private) or looks up (public) to seal and open envelopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.core.registry import Registry


@dataclass(frozen=True)
class SigningIdentity:
    """The sending agency's Ed25519 key and the id the registry knows it by."""

    agency: str
    key_id: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class RecipientKey:
    """A recipient agency's current X25519 key, as the registry publishes it."""

    agency: str
    key_id: str
    public_key: X25519PublicKey


def recipient_keys(registry: Registry, agencies: Iterable[str], at: datetime) -> list[RecipientKey]:
    """Each agency's newest encryption key valid at ``at``: whom a message is sealed to."""
    keys = []
    for agency in agencies:
        key_id, public = registry.encryption_key(agency, at)
        keys.append(RecipientKey(agency, key_id, public))
    return keys


@dataclass(frozen=True)
class DecryptionIdentity:
    """An agency's X25519 private keys by key id: several, because messages sealed
    to a key that has since been rotated must still open."""

    agency: str
    private_keys: Mapping[str, X25519PrivateKey]
