"""Shared keys, registries and container surgery for the envelope tests.

Keys are generated once per agency per test session, so every test sees
the same registry and runs fast.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.core.envelope import (
    DecryptionIdentity,
    HeaderFields,
    RecipientKey,
    SigningIdentity,
    TimeWindow,
    seal_bytes,
)
from gateway.core.envelope.container import encode_head, split_head
from gateway.core.envelope.header import header_bytes, header_element
from gateway.core.envelope.protocol import HEADER_SIGNATURE_LABEL
from gateway.core.envelope.segments import encrypt_segments
from gateway.core.envelope.statement import content_statement
from gateway.core.envelope.wrap import wrap_content_key
from gateway.core.registry import Agency, KeyUse, PublicKeyRecord, Registry, key_id_for

NOW = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
WINDOW = TimeWindow(max_age=timedelta(hours=1), max_future_skew=timedelta(minutes=5))
AGENCIES = ("police", "health", "childrens-social-care", "probation", "education", "housing")
SEGMENT = 1024


@dataclass(frozen=True)
class AgencyKeys:
    agency: str
    sign: Ed25519PrivateKey
    enc: X25519PrivateKey

    @property
    def sign_id(self) -> str:
        return key_id_for(self.agency, KeyUse.SIGN, self.sign.public_key().public_bytes_raw())

    @property
    def enc_id(self) -> str:
        return key_id_for(self.agency, KeyUse.ENCRYPT, self.enc.public_key().public_bytes_raw())

    def signer(self) -> SigningIdentity:
        return SigningIdentity(self.agency, self.sign_id, self.sign)

    def recipient(self) -> RecipientKey:
        return RecipientKey(self.agency, self.enc_id, self.enc.public_key())

    def identity(self) -> DecryptionIdentity:
        return DecryptionIdentity(self.agency, {self.enc_id: self.enc})

    def records(self, **validity: Any) -> list[PublicKeyRecord]:
        """Sign and encrypt records, valid a month back to a year ahead unless overridden."""
        window: dict[str, Any] = {
            "not_before": NOW - timedelta(days=30),
            "expires": NOW + timedelta(days=365),
        }
        window.update(validity)
        return [
            PublicKeyRecord(
                self.sign_id,
                self.agency,
                KeyUse.SIGN,
                self.sign.public_key().public_bytes_raw(),
                **window,
            ),
            PublicKeyRecord(
                self.enc_id,
                self.agency,
                KeyUse.ENCRYPT,
                self.enc.public_key().public_bytes_raw(),
                **window,
            ),
        ]


def new_keys(agency: str) -> AgencyKeys:
    return AgencyKeys(agency, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())


@cache
def keys(agency: str) -> AgencyKeys:
    return new_keys(agency)


@cache
def intake_key(agency: str) -> Ed25519PrivateKey:
    """The secure-mail intake's signing key for ``agency`` (it signs only mail)."""
    return Ed25519PrivateKey.generate()


def intake_record(agency: str) -> PublicKeyRecord:
    raw = intake_key(agency).public_key().public_bytes_raw()
    key_id = key_id_for(agency, KeyUse.SIGN, raw)
    start, end = NOW - timedelta(days=30), NOW + timedelta(days=365)
    return PublicKeyRecord(key_id, agency, KeyUse.SIGN, raw, start, end, intake=True)


def intake_signer(agency: str) -> SigningIdentity:
    return SigningIdentity(agency, intake_record(agency).key_id, intake_key(agency))


def registry(records: Iterable[PublicKeyRecord] | None = None) -> Registry:
    """Every agency, with the standard keys (its edge's and the intake's for it) unless
    ``records`` says otherwise."""
    if records is None:
        records = [r for a in AGENCIES for r in [*keys(a).records(), intake_record(a)]]
    return Registry.build([Agency(a, a.title(), a) for a in AGENCIES], records)


def fields(
    sender: str = "police", recipients: Sequence[str] = ("health",), **overrides: Any
) -> HeaderFields:
    base = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id="mash-2025-0001",
        message_type="Referral",
        sender=sender,
        recipients=tuple(recipients),
        created_at=NOW,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e", "ca-2004-s11"),
    )
    return replace(base, **overrides)


def seal_to(
    plaintext: bytes,
    sender: str = "police",
    recipients: Sequence[str] = ("health",),
    segment_size: int = SEGMENT,
    **overrides: Any,
) -> bytes:
    return seal_bytes(
        fields(sender, recipients, **overrides),
        plaintext,
        keys(sender).signer(),
        [keys(r).recipient() for r in recipients],
        segment_size,
    )


class SeenSet:
    """An in-memory SeenMessages."""

    def __init__(self, *ids: str) -> None:
        self.ids = set(ids)

    def seen(self, message_id: str) -> bool:
        return message_id in self.ids


def split(container: bytes) -> tuple[bytes, bytes, bytes]:
    """(header bytes, header signature, ciphertext)."""
    head = split_head(container)
    return head.header_bytes, head.signature, container[head.size :]


def assemble(header: bytes, signature: bytes, ciphertext: bytes) -> bytes:
    return encode_head(header, signature) + ciphertext


def resign(header: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(HEADER_SIGNATURE_LABEL + header)


def frames(ciphertext: bytes) -> list[bytes]:
    """The framed segments (length prefix included), in order."""
    out, at = [], 0
    while at < len(ciphertext):
        (size,) = struct.unpack_from(">I", ciphertext, at)
        out.append(ciphertext[at : at + 4 + size])
        at += 4 + size
    return out


def build_container(
    header_fields: HeaderFields,
    signer: SigningIdentity,
    recipients: Sequence[RecipientKey],
    plaintext: bytes,
    content_sign: Callable[[bytes], bytes] | None = None,
    content_key: bytes = b"\x07" * 32,
) -> bytes:
    """Assemble a container from the internal parts, bypassing seal's refusals.

    This is how the tests play a forger: any signer, any recipients, any
    content signature, a content key the forger already knows.
    """
    mid = header_fields.message_id

    def honest(digest: bytes) -> bytes:
        statement = content_statement(mid, header_fields.sender, header_fields.recipients, digest)
        return signer.private_key.sign(statement)

    wrapped = tuple(wrap_content_key(content_key, mid, r) for r in recipients)
    element = header_element(header_fields, signer.key_id, wrapped, SEGMENT)
    body = io.BytesIO()
    payload = encrypt_segments(
        content_key, mid, io.BytesIO(plaintext), SEGMENT, content_sign or honest, body
    )
    raw = header_bytes(element, payload.ciphertext_sha256, payload.ciphertext_length)
    return assemble(raw, resign(raw, signer.private_key), body.getvalue())
