"""A receipt's outcome travels in its signed header, so the router records it without reading it."""

import pytest
from envelope_keys import NOW, registry, seal_to

from gateway.core.envelope import EnvelopeError, verify

pytestmark = pytest.mark.unit


def test_negative_receipt_outcome_and_check_are_signed_header_facts() -> None:
    sealed = seal_to(
        b"<receipt/>",
        "health",
        ("police",),
        message_type="DeliveryReceipt",
        purpose="gateway-operations",
        receipt_outcome="negative",
        receipt_check="payload-schema",
    )
    fields = verify(sealed, registry(), NOW, None, None).header.fields
    assert (fields.receipt_outcome, fields.receipt_check) == ("negative", "payload-schema")


def test_messages_without_a_receipt_element_have_no_outcome() -> None:
    fields = verify(seal_to(b"<x/>"), registry(), NOW, None, None).header.fields
    assert (fields.receipt_outcome, fields.receipt_check) == (None, None)


def test_flipping_the_outcome_breaks_the_signature() -> None:
    sealed = seal_to(
        b"<receipt/>",
        "health",
        ("police",),
        message_type="DeliveryReceipt",
        purpose="gateway-operations",
        receipt_outcome="negative",
    )
    forged = sealed.replace(b'outcome="negative"', b'outcome="positive"', 1)
    with pytest.raises(EnvelopeError) as caught:
        verify(forged, registry(), NOW, None, None)
    assert caught.value.check == "signature"


def test_an_unknown_outcome_is_a_header_error() -> None:
    with pytest.raises(EnvelopeError) as caught:
        seal_to(
            b"<receipt/>",
            "health",
            ("police",),
            message_type="DeliveryReceipt",
            purpose="gateway-operations",
            receipt_outcome="maybe",
        )
    assert caught.value.check == "header"
