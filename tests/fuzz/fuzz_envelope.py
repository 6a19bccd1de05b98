"""Fuzz the envelope container and header parser, verification and opening.

Feeds: bytes read two ways. As a whole container (MASHENV1 | length |
header XML | signature | segments), verified as it came: the framing. And
as ``header XML || SEPARATOR || segments``, framed here with the right length
and the header signed by the sender's key, so a mutated header gets past the
length and the signature to the schema, timestamp, replay, ciphertext and
segment checks and to opening for the recipient.
Oracle: only EnvelopeError (the one error the envelope raises, naming its check).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import atheris

with atheris.instrument_imports(include=["gateway"]):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from gateway.core.envelope import (
        DecryptionIdentity,
        EnvelopeError,
        HeaderFields,
        RecipientKey,
        SigningIdentity,
        TimeWindow,
        check_ciphertext,
        open_bytes,
        seal_bytes,
        verify,
    )
    from gateway.core.envelope.container import encode_head, split_head
    from gateway.core.envelope.protocol import HEADER_SIGNATURE_LABEL
    from gateway.core.registry import Agency, KeyUse, PublicKeyRecord, Registry, key_id_for

import contextlib

from fuzz_common import main

NOW = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
WINDOW = TimeWindow(max_age=timedelta(days=3650), max_future_skew=timedelta(days=3650))


def _secret(label: str) -> bytes:
    """Fixed test-only key material, so the committed seeds verify in every run."""
    return hashlib.sha256(f"mash-gateway fuzz {label}".encode()).digest()


SIGN = Ed25519PrivateKey.from_private_bytes(_secret("police sign"))
ENCRYPT = X25519PrivateKey.from_private_bytes(_secret("health encrypt"))
SIGN_ID = key_id_for("police", KeyUse.SIGN, SIGN.public_key().public_bytes_raw())
ENCRYPT_ID = key_id_for("health", KeyUse.ENCRYPT, ENCRYPT.public_key().public_bytes_raw())
REGISTRY = Registry.build(
    [Agency("police", "Police", "police"), Agency("health", "Health", "health")],
    [
        PublicKeyRecord(
            SIGN_ID,
            "police",
            KeyUse.SIGN,
            SIGN.public_key().public_bytes_raw(),
            NOW - timedelta(days=365),
            NOW + timedelta(days=365),
        ),
        PublicKeyRecord(
            ENCRYPT_ID,
            "health",
            KeyUse.ENCRYPT,
            ENCRYPT.public_key().public_bytes_raw(),
            NOW - timedelta(days=365),
            NOW + timedelta(days=365),
        ),
    ],
)
SEPARATOR = b"\n--MASH-SEGMENTS--\n"
IDENTITY = DecryptionIdentity("health", {ENCRYPT_ID: ENCRYPT})


class _Seen:
    def seen(self, message_id: str) -> bool:
        return message_id == "00000000-0000-4000-8000-000000000000"


def one_input(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        verify(data, REGISTRY, NOW, WINDOW, _Seen())
    header, _, segments = data.partition(SEPARATOR)
    resigned = encode_head(header, SIGN.sign(HEADER_SIGNATURE_LABEL + header)) + segments
    verified = verify(resigned, REGISTRY, NOW, WINDOW, _Seen())
    with contextlib.suppress(EnvelopeError):
        check_ciphertext(verified, resigned)
    open_bytes(resigned, REGISTRY, IDENTITY, NOW, WINDOW, None)


def seeds() -> dict[str, bytes]:
    signer = SigningIdentity("police", SIGN_ID, SIGN)
    recipient = RecipientKey("health", ENCRYPT_ID, ENCRYPT.public_key())
    base = HeaderFields(
        message_id=str(uuid.UUID(int=1, version=4)),
        correlation_id="mash-2026-0001",
        message_type="Referral",
        sender="police",
        recipients=("health",),
        created_at=NOW,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e", "ca-2004-s11"),
    )
    receipt = HeaderFields(
        message_id=str(uuid.UUID(int=2, version=4)),
        correlation_id="mash-2026-0001",
        message_type="DeliveryReceipt",
        sender="police",
        recipients=("health",),
        created_at=NOW,
        purpose="gateway-operations",
        lawful_bases=("uk-gdpr-6-1-e",),
        in_reply_to=str(uuid.UUID(int=1, version=4)),
        receipt_outcome="negative",
        receipt_check="payload-schema",
    )
    request = HeaderFields(
        message_id=str(uuid.UUID(int=3, version=4)),
        correlation_id="mash-2026-0001",
        message_type="InformationRequest",
        sender="police",
        recipients=("health",),
        created_at=NOW,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e",),
        rag="Amber",
        deadline=NOW + timedelta(days=1),
    )
    containers = {
        "referral": seal_bytes(base, b"<Referral/>", signer, [recipient], 1024),
        "two-segments": seal_bytes(base, b"x" * 1500, signer, [recipient], 1024),
        "empty": seal_bytes(base, b"", signer, [recipient], 1024),
        "receipt": seal_bytes(receipt, b"<DeliveryReceipt/>", signer, [recipient], 1024),
        "request": seal_bytes(request, b"<InformationRequest/>", signer, [recipient], 4096),
    }
    found = {f"container-{name}": data for name, data in containers.items()}
    for name, data in containers.items():
        head = split_head(data)
        found[f"parts-{name}"] = head.header_bytes + SEPARATOR + data[head.size :]
    return found


if __name__ == "__main__":
    main(one_input, (EnvelopeError,), seeds)
