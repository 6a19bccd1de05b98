"""The agency registry: which public key belongs to which agency, and when it may be used.

Pure: built from config values, asked questions with an explicit instant.
Rules:
- a key verifies or receives only inside [not_before, expires);
- a revoked key never verifies, not even for messages dated before the
  revocation, because a revoked key's holder may have back-dated them;
- a rotated key is simply an older key: it keeps verifying until it expires,
  while sealing always uses the newest usable key;
- an agency's signing keys have one of two roles: its edge's, or the secure-mail
  intake's (``intake = true``), which the intake holds instead of the agency's
  own so that the intake host cannot act as an agency that has an edge. An
  intake key signs only what came by mail (assurance ``pgp-verified`` or
  ``tls-only``), and an edge key never claims mail-borne assurance
  (``scope_problem``); each side seals only with a key of its own role.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gateway.core.errors import GatewayError


class KeyUse(StrEnum):
    SIGN = "sign"
    ENCRYPT = "encrypt"


class KeyRejected(GatewayError):
    """A key id is unknown, belongs to another agency, is revoked, or is outside its validity."""


# The header Assurance values (common.xsd) only the secure-mail intake may state.
MAIL_ASSURANCES = frozenset({"pgp-verified", "tls-only"})


class UnknownAgency(GatewayError):
    """An agency id that the registry does not list."""


def key_id_for(agency: str, use: KeyUse, raw_public_key: bytes) -> str:
    """Key ids name the agency, the use, and 16 hex of the public key's SHA-256."""
    return f"{agency}.{use.value}.{hashlib.sha256(raw_public_key).hexdigest()[:16]}"


@dataclass(frozen=True)
class PublicKeyRecord:
    key_id: str
    agency: str
    use: KeyUse
    raw: bytes
    not_before: datetime
    expires: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    intake: bool = False  # the secure-mail intake's key for this agency, not its edge's

    @property
    def role(self) -> str:
        return "intake" if self.intake else "edge"

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def problem_at(self, at: datetime) -> str | None:
        """Why this key may not be used at ``at``, or None if it may."""
        if self.revoked_at is not None:
            return f"key {self.key_id} is revoked ({self.revocation_reason or 'no reason given'})"
        if at < self.not_before:
            return f"key {self.key_id} is not valid before {self.not_before.isoformat()}"
        if at >= self.expires:
            return f"key {self.key_id} expired at {self.expires.isoformat()}"
        return None


def scope_problem(record: PublicKeyRecord, assurance: str) -> str | None:
    """Why a message stating ``assurance`` may not be signed by ``record``, or None if it may.

    The assurance travels in the signed header, so the key that signed it
    must be of the role that may state it: the intake's for mail, an edge's
    for everything else.
    """
    if record.intake and assurance not in MAIL_ASSURANCES:
        return (
            f"intake key used outside mail scope: {record.key_id} signed a message with "
            f"assurance {assurance!r}; an intake key signs only "
            f"{' or '.join(sorted(MAIL_ASSURANCES))} messages"
        )
    if not record.intake and assurance in MAIL_ASSURANCES:
        return (
            f"edge key used for mail: {record.key_id} signed a message with assurance "
            f"{assurance!r}, which only {record.agency}'s intake key may state"
        )
    return None


@dataclass(frozen=True)
class Agency:
    id: str
    name: str
    kind: str
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    agencies: Mapping[str, Agency]
    keys: Mapping[str, PublicKeyRecord] = field(default_factory=dict)  # in registration order

    @classmethod
    def build(cls, agencies: Iterable[Agency], keys: Iterable[PublicKeyRecord]) -> Registry:
        return cls({a.id: a for a in agencies}, {k.key_id: k for k in keys})

    def agency(self, agency_id: str) -> Agency:
        try:
            return self.agencies[agency_id]
        except KeyError:
            raise UnknownAgency(f"unknown agency {agency_id!r}") from None

    def record(self, key_id: str, agency: str, use: KeyUse, at: datetime) -> PublicKeyRecord:
        """The record for ``key_id`` if ``agency`` may use it for ``use`` at ``at``."""
        rec = self.keys.get(key_id)
        if rec is None:
            raise KeyRejected(f"unknown key id {key_id!r}")
        if rec.agency != agency:
            raise KeyRejected(f"key {key_id} belongs to {rec.agency!r}, not {agency!r}")
        if rec.use is not use:
            raise KeyRejected(f"key {key_id} is a {rec.use.value} key, not a {use.value} key")
        problem = rec.problem_at(at)
        if problem:
            raise KeyRejected(problem)
        return rec

    def verifying_key(self, key_id: str, agency: str, at: datetime) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.record(key_id, agency, KeyUse.SIGN, at).raw)

    def current_key(
        self, agency: str, use: KeyUse, at: datetime, *, intake: bool = False
    ) -> PublicKeyRecord:
        """The newest key of ``agency`` usable for ``use`` at ``at``: the one to seal with.

        Newest means last registered: keys are only ever appended to the
        config, so registration order is rotation order, even when two keys
        share a ``not_before`` second. Only keys of the asked role count: an
        edge never picks the intake's key, nor the intake an edge's.
        """
        self.agency(agency)
        held = [
            k
            for k in self.keys.values()
            if k.agency == agency and k.use is use and k.intake is intake
        ]
        usable = [k for k in held if k.problem_at(at) is None]
        if not usable:
            newest = f": {held[-1].problem_at(at)}" if held else ""
            role = " intake" if intake else ""
            raise KeyRejected(f"agency {agency!r} has no valid{role} {use.value} key{newest}")
        return usable[-1]

    def encryption_key(self, agency: str, at: datetime) -> tuple[str, X25519PublicKey]:
        rec = self.current_key(agency, KeyUse.ENCRYPT, at)
        return rec.key_id, X25519PublicKey.from_public_bytes(rec.raw)

    def keys_of(self, agency: str) -> list[PublicKeyRecord]:
        return sorted(
            (k for k in self.keys.values() if k.agency == agency),
            key=lambda k: (k.use.value, k.not_before, k.key_id),
        )
