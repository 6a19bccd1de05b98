"""Confidentiality: only listed recipients can read; the clear parts leak nothing."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from envelope_keys import NOW, WINDOW, fields, keys, new_keys, registry, seal_to, split

from gateway.core.envelope import (
    DecryptionIdentity,
    EnvelopeError,
    RecipientKey,
    open_bytes,
    seal_bytes,
    verify,
)

pytestmark = pytest.mark.unit

SECRET = b"Subject: Jane Smith, NHS 943 476 5919, disclosed domestic abuse"


def test_a_non_recipient_cannot_open() -> None:
    with pytest.raises(EnvelopeError) as err:
        open_bytes(seal_to(SECRET), registry(), keys("probation").identity(), NOW, WINDOW, None)
    assert err.value.check == "recipient"
    assert "probation is not a recipient" in str(err.value)


def test_a_recipient_without_the_named_private_key_cannot_open() -> None:
    identity = DecryptionIdentity("health", {})
    with pytest.raises(EnvelopeError) as err:
        open_bytes(seal_to(SECRET), registry(), identity, NOW, WINDOW, None)
    assert err.value.check == "recipient"
    assert keys("health").enc_id in str(err.value)


def test_another_private_key_under_the_recipient_key_id_cannot_unwrap() -> None:
    identity = DecryptionIdentity("health", {keys("health").enc_id: X25519PrivateKey.generate()})
    with pytest.raises(EnvelopeError) as err:
        open_bytes(seal_to(SECRET), registry(), identity, NOW, WINDOW, None)
    assert err.value.check == "recipient"


def test_neither_header_nor_ciphertext_contains_the_plaintext() -> None:
    container = seal_to(SECRET * 50, recipients=("health", "probation"))
    header, _, ciphertext = split(container)
    for needle in (b"Jane Smith", b"943 476 5919", base64.b64encode(SECRET)[:24]):
        assert needle not in container
    assert b"Jane" not in header
    assert len(ciphertext) > len(SECRET * 50)


def test_the_router_reads_the_routing_fields_without_any_private_key() -> None:
    verified = verify(
        seal_to(SECRET, recipients=("health", "probation")), registry(), NOW, WINDOW, None
    )
    fields = verified.header.fields
    assert (fields.sender, fields.recipients) == ("police", ("health", "probation"))
    assert fields.purpose == "child-safeguarding"


def test_a_message_sealed_to_a_rotated_out_encryption_key_still_opens() -> None:
    old, current = new_keys("health"), keys("health")
    container = seal_bytes(
        fields(),
        SECRET,
        keys("police").signer(),
        [RecipientKey("health", old.enc_id, old.enc.public_key())],
    )
    both = DecryptionIdentity("health", {current.enc_id: current.enc, old.enc_id: old.enc})
    _, out = open_bytes(container, registry(), both, NOW, WINDOW, None)
    assert out == SECRET
