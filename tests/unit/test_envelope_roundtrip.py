"""Round trips: what goes in comes out, for one or many recipients and any size."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from typing import Any

import pytest
from envelope_keys import (
    NOW,
    SEGMENT,
    WINDOW,
    fields,
    intake_signer,
    keys,
    registry,
    seal_to,
    split,
)
from lxml import etree

from gateway.core import xmlsafe
from gateway.core.envelope import EnvelopeError, open_bytes, seal, seal_bytes, verify
from gateway.core.resources import schemas_dir

pytestmark = pytest.mark.unit

FIVE = ("health", "childrens-social-care", "probation", "education", "housing")


def header_xsd() -> etree.XMLSchema:
    path = schemas_dir() / "envelope-header.xsd"
    return etree.XMLSchema(etree.parse(str(path), parser=xmlsafe.schema_parser()))


def test_one_recipient_round_trip() -> None:
    plaintext = b"<Referral>...</Referral>" * 100
    opened, out = open_bytes(
        seal_to(plaintext), registry(), keys("health").identity(), NOW, WINDOW, None
    )
    assert out == plaintext
    assert opened.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    assert opened.plaintext_length == len(plaintext)
    assert opened.header.fields.sender == "police"


def test_every_one_of_five_recipients_opens_the_same_plaintext() -> None:
    plaintext = b"information request" * 300
    container = seal_to(plaintext, recipients=FIVE)
    for agency in FIVE:
        opened, out = open_bytes(container, registry(), keys(agency).identity(), NOW, WINDOW, None)
        assert out == plaintext
        assert opened.header.fields.recipients == FIVE


def test_empty_payload_round_trips() -> None:
    opened, out = open_bytes(seal_to(b""), registry(), keys("health").identity(), NOW, None, None)
    assert out == b""
    assert opened.plaintext_sha256 == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("size", [SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 5 * SEGMENT + 7])
def test_multi_segment_payloads_round_trip_at_segment_boundaries(size: int) -> None:
    plaintext = bytes(i % 251 for i in range(size))
    _, out = open_bytes(seal_to(plaintext), registry(), keys("health").identity(), NOW, None, None)
    assert out == plaintext


def test_seal_returns_the_header_that_verify_reads_back() -> None:
    out = io.BytesIO()
    sealed = seal(
        fields(recipients=FIVE, rag="Red", deadline=NOW + timedelta(hours=4)),
        io.BytesIO(b"x" * 5000),
        keys("police").signer(),
        [keys(a).recipient() for a in FIVE],
        out,
        io.BytesIO(),
        segment_size=SEGMENT,
    )
    verified = verify(out.getvalue(), registry(), NOW, WINDOW, None)
    assert verified.header == sealed
    assert verified.header.sha256 == hashlib.sha256(sealed.raw).hexdigest()


def test_produced_headers_are_valid_against_the_xsd() -> None:
    minimal = split(seal_to(b"x"))[0]
    full = split(
        seal_to(
            b"x",
            recipients=FIVE,
            message_type="InformationRequest",
            in_reply_to="0b7e3c3e-9a64-4f8e-8f5e-3d2b1a0c9e8f",
            rag="Amber",
            deadline=NOW + timedelta(hours=24),
            assurance="tls-only",
        )
    )[0]
    schema = header_xsd()
    for header in (minimal, full):
        assert schema.validate(xmlsafe.parse(header)), schema.error_log


def test_all_optional_fields_survive_the_round_trip() -> None:
    sent = fields(
        recipients=("health",),
        in_reply_to="0b7e3c3e-9a64-4f8e-8f5e-3d2b1a0c9e8f",
        rag="Green",
        deadline=NOW + timedelta(hours=72),
        assurance="pgp-verified",
    )
    container = seal_bytes(sent, b"x", intake_signer("police"), [keys("health").recipient()])
    assert verify(container, registry(), NOW, WINDOW, None).header.fields == sent


def test_seal_refuses_recipient_keys_that_differ_from_the_recipient_list() -> None:
    with pytest.raises(EnvelopeError) as err:
        seal_bytes(
            fields(recipients=("health", "probation")),
            b"x",
            keys("police").signer(),
            [keys("health").recipient()],
        )
    assert err.value.check == "recipient"


def test_seal_refuses_a_signer_that_is_not_the_sender() -> None:
    with pytest.raises(EnvelopeError) as err:
        seal_bytes(
            fields(sender="police"), b"x", keys("health").signer(), [keys("health").recipient()]
        )
    assert err.value.check == "key"


@pytest.mark.parametrize(
    "override",
    [
        {"created_at": NOW.replace(tzinfo=None)},
        {"lawful_bases": ("because-we-can",)},
        {"correlation_id": "Jane Smith"},
        {"message_id": "not-a-uuid"},
    ],
)
def test_seal_refuses_header_fields_the_schema_forbids(override: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError) as err:
        seal_bytes(fields(**override), b"x", keys("police").signer(), [keys("health").recipient()])
    assert err.value.check == "header"


def test_seal_refuses_a_segment_size_outside_the_schema_bounds() -> None:
    with pytest.raises(EnvelopeError) as err:
        seal_to(b"x", segment_size=512)
    assert err.value.check == "header"
