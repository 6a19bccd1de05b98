"""Fuzz the envelope container and header parser, verification and opening.

Feeds: bytes read two ways. As a whole container (MASHENV1 | length |
header XML | signature | segments), verified as it came: the framing. And
as ``header XML || SEPARATOR || segments``, framed here with the right length
and the header signed by the sender's key, so a mutated header gets past the
length and the signature to the schema, timestamp, replay, ciphertext and
segment checks and to opening for the recipient. An input starting with a
zero byte takes one of the seed containers instead and replaces one to three
of its header's texts or attribute values with text the rest of the input
makes, so values of every type reach the header's readers.
Oracle: only EnvelopeError (the one error the envelope raises, naming its check).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import atheris
from lxml import etree

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

from fuzz_common import main, replace_values

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


def with_values(data: bytes) -> bytes | None:
    """A seed's header with values taken from ``data``, as header || SEPARATOR || segments."""
    given = atheris.FuzzedDataProvider(data)
    header, segments = BASES[given.ConsumeIntInRange(0, len(BASES) - 1)]
    root = etree.fromstring(header)
    if not replace_values(root, given):
        return None
    return bytes(etree.tostring(root, encoding="UTF-8")) + SEPARATOR + segments


def one_input(data: bytes) -> None:
    if data[:1] == b"\0":
        made = with_values(data[1:])
        if made is None:
            return
        data = made
    with contextlib.suppress(EnvelopeError):
        verify(data, REGISTRY, NOW, WINDOW, _Seen())
    header, _, segments = data.partition(SEPARATOR)
    resigned = encode_head(header, SIGN.sign(HEADER_SIGNATURE_LABEL + header)) + segments
    verified = verify(resigned, REGISTRY, NOW, WINDOW, _Seen())
    with contextlib.suppress(EnvelopeError):
        check_ciphertext(verified, resigned)
    open_bytes(resigned, REGISTRY, IDENTITY, NOW, WINDOW, None)


def containers() -> dict[str, bytes]:
    """Sealed messages of each header shape, by the fixed test keys."""
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
    return {
        "referral": seal_bytes(base, b"<Referral/>", signer, [recipient], 1024),
        "two-segments": seal_bytes(base, b"x" * 1500, signer, [recipient], 1024),
        "empty": seal_bytes(base, b"", signer, [recipient], 1024),
        "receipt": seal_bytes(receipt, b"<DeliveryReceipt/>", signer, [recipient], 1024),
        "request": seal_bytes(request, b"<InformationRequest/>", signer, [recipient], 4096),
    }


def seeds() -> dict[str, bytes]:
    made = containers()
    found = {f"container-{name}": data for name, data in made.items()}
    for name, data in made.items():
        head = split_head(data)
        found[f"parts-{name}"] = head.header_bytes + SEPARATOR + data[head.size :]
    for index in range(len(BASES)):
        found[f"values-{index}"] = b"\0" + bytes([index]) * 4 + b"2026-03-03T09:30:00Z" * 2
    return found


def _bases() -> list[tuple[bytes, bytes]]:
    found = []
    for data in containers().values():
        head = split_head(data)
        found.append((head.header_bytes, data[head.size :]))
    return found


BASES = _bases()


if __name__ == "__main__":
    main(one_input, (EnvelopeError,), seeds)
