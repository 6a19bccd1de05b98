"""The gateway's own messages are valid against their schemas."""

from datetime import UTC, datetime

import pytest

from gateway.core import notices, schemas
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.vocabulary import SYSTEM_PURPOSE

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ID = "7a0e4b62-1d3c-4f5a-8e9b-2c6d0f1a3b57"


def test_non_delivery_is_schema_valid() -> None:
    data = notices.non_delivery(ID, "health", "policy", "no agreement lets hub send X", AT)
    assert schemas.message_type(schemas.validate(data, "nd")) == "NonDelivery"


def test_receipts_are_schema_valid() -> None:
    positive = notices.positive_receipt(ID, "health", AT, "a" * 64, "b" * 64, AT)
    negative = notices.negative_receipt(ID, "health", AT, "a" * 64, "payload-schema", "line 3")
    for data in (positive, negative):
        assert schemas.message_type(schemas.validate(data, "receipt")) == "DeliveryReceipt"


def test_every_notice_header_has_the_gateway_purpose_and_one_lawful_basis() -> None:
    about = notices.notice_header(
        "NonDelivery", ID, "gateway", ("hub",), ClaimedFacts("m-1", "CASE-1", "hub", "Referral"), AT
    )
    assert (about.purpose, about.lawful_bases) == (SYSTEM_PURPOSE, ("uk-gdpr-6-1-e",))
    assert (about.in_reply_to, about.correlation_id, about.created_at) == ("m-1", "CASE-1", AT)
    with pytest.raises(ValueError, match="Referral is not a notice type"):
        notices.notice_header("Referral", ID, "hub", ("police",), about, AT)
