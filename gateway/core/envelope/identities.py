"""The keys an edge holds (private) or looks up (public) to seal and open envelopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.core.errors import GatewayError
from gateway.core.registry import KeyUse, Registry


class SigningKeyNotHeld(GatewayError):
    """The registry's current signing key for the agency is not among the private keys held."""


@dataclass(frozen=True)
class SigningIdentity:
    """The sending agency's Ed25519 key and the id the registry knows it by."""

    agency: str
    key_id: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKeys:
    """An agency's Ed25519 private keys by key id, read from disk once; the registry picks one.

    Holding a private key is not licence to sign with it: ``signer`` asks the
    registry for the agency's current key at ``at`` each time, so a key the
    registry has revoked or let expire is never used, however long the keys
    have been held. ``intake`` says which role's keys these are (core/registry.py):
    the secure-mail intake's, or the agency's edge's.
    """

    agency: str
    private_keys: Mapping[str, Ed25519PrivateKey]
    intake: bool = False

    def signer(self, registry: Registry, at: datetime) -> SigningIdentity:
        """The identity to sign with at ``at``; raises when the registry allows none held here."""
        record = registry.current_key(self.agency, KeyUse.SIGN, at, intake=self.intake)
        private = self.private_keys.get(record.key_id)
        if private is None:
            held = ", ".join(sorted(self.private_keys)) or "none"
            raise SigningKeyNotHeld(
                f"{self.agency}: the current signing key {record.key_id} is not among the "
                f"private keys loaded (held: {held}); install it and reload"
            )
        return SigningIdentity(self.agency, record.key_id, private)


@dataclass(frozen=True)
class RecipientKey:
    """A recipient agency's current X25519 key, as the registry publishes it."""

    agency: str
    key_id: str
    public_key: X25519PublicKey


def recipient_keys(registry: Registry, agencies: Iterable[str], at: datetime) -> list[RecipientKey]:
    """Each agency's newest encryption key valid at ``at``: whom a message is sealed to."""
    return [RecipientKey(a, *registry.encryption_key(a, at)) for a in agencies]


@dataclass(frozen=True)
class DecryptionIdentity:
    """An agency's X25519 private keys by key id: several, because messages sealed
    to a key that has since been rotated must still open."""

    agency: str
    private_keys: Mapping[str, X25519PrivateKey]
