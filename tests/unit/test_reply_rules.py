"""Who may answer what: the one table, row by row, and the refusals it gives routing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.core import reply_rules
from gateway.core.envelope import HeaderFields
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord
from gateway.core.reply_rules import RULES, Reference, Sender
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES, message_types

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NOTICES = SYSTEM_MESSAGE_TYPES


def record(
    message_type: str, sender: str = "hub", recipients: tuple[str, ...] = ("csc",)
) -> MessageRecord:
    return MessageRecord(
        "orig-1", "CASE-1", None, message_type, sender, recipients, None, None, AT, State.ROUTED
    )


def reply(message_type: str, sender: str = "csc", **changes: object) -> HeaderFields:
    base: dict[str, object] = dict(
        message_id="m-2",
        correlation_id="CASE-1",
        created_at=AT,
        message_type=message_type,
        sender=sender,
        recipients=("hub",),
        purpose="gateway-operations" if message_type in NOTICES else "child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e",),
        in_reply_to="orig-1",
    )
    base.update(changes)
    return HeaderFields(**base)  # type: ignore[arg-type]


def test_every_message_type_has_one_row() -> None:
    assert set(RULES) == message_types()


def test_only_the_gateway_issues_non_deliveries_and_escalations() -> None:
    assert {t for t, r in RULES.items() if r.sender is Sender.GATEWAY} == {
        "NonDelivery",
        "Escalation",
    }


@pytest.mark.parametrize("message_type", sorted(NOTICES))
def test_a_notice_never_refers_to_a_notice(message_type: str) -> None:
    assert not RULES[message_type].refers_to & NOTICES


@pytest.mark.parametrize(
    ("message_type", "referred", "expected"),
    [
        ("InformationResponse", "InformationRequest", True),
        ("Decision", "InformationRequest", False),
        ("DeliveryReceipt", "InformationRequest", False),
        ("InformationResponse", "Referral", False),
        ("Decision", "Referral", False),
    ],
)
def test_only_a_response_answers_a_request(
    message_type: str, referred: str, expected: bool
) -> None:
    assert reply_rules.answers(message_type, referred) is expected


@pytest.mark.parametrize("message_type", ["InformationResponse", "DeliveryReceipt"])
def test_a_reply_counts_only_from_a_recipient_of_what_it_names(message_type: str) -> None:
    original = record("InformationRequest")
    assert reply_rules.refusal(reply(message_type, "csc"), original) is None
    assert reply_rules.refusal(reply(message_type, "education"), original) == (
        "education replied to orig-1 but was not its recipient"
    )


def test_a_reply_names_a_message_the_gateway_routed() -> None:
    assert reply_rules.refusal(reply("InformationResponse"), None) == (
        "orig-1, which this InformationResponse replies to, was never routed here"
    )
    assert reply_rules.refusal(reply("DeliveryReceipt", in_reply_to=None), None) == (
        "DeliveryReceipt must reply to a message the gateway routed"
    )


def test_an_unprompted_response_may_name_nothing_but_a_referral_never_names_anything() -> None:
    assert RULES["InformationResponse"].reference is Reference.MAY
    assert reply_rules.refusal(reply("InformationResponse", in_reply_to=None), None) is None
    assert reply_rules.refusal(reply("Referral"), record("Referral")) == (
        "Referral replies to nothing (it names orig-1)"
    )


def test_a_reply_of_the_wrong_kind_is_refused() -> None:
    assert reply_rules.refusal(reply("InformationResponse"), record("Decision")) == (
        "InformationResponse may not reply to Decision orig-1"
    )
    notice = record("NonDelivery", sender="gateway")
    assert reply_rules.refusal(reply("DeliveryReceipt"), notice) == (
        "DeliveryReceipt may not reply to NonDelivery orig-1"
    )


def test_a_reply_stays_in_its_case_and_a_receipt_goes_back_to_the_sender_only() -> None:
    original = record("InformationRequest")
    assert reply_rules.refusal(reply("InformationResponse", correlation_id="CASE-9"), original) == (
        "a reply to orig-1 stays in its case CASE-1"
    )
    redirected = reply("DeliveryReceipt", recipients=("police",))
    assert reply_rules.refusal(redirected, original) == (
        "DeliveryReceipt for orig-1 goes to hub only"
    )


def test_a_non_delivery_may_refer_to_business_messages_only() -> None:
    assert reply_rules.may_refer("NonDelivery", "Referral")
    assert not any(reply_rules.may_refer("NonDelivery", t) for t in NOTICES)
