"""Router decisions: deny by default, receipts only back to the sender, system types reserved."""

from datetime import UTC, date, datetime

import pytest

from gateway.core.envelope import HeaderFields
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord
from gateway.core.registry import Agency, Registry
from gateway.core.routing import Deliver, ForwardReceipt, Reject, route
from gateway.core.sharing import Agreement

pytestmark = pytest.mark.unit

TODAY = date(2026, 11, 23)
REGISTRY = Registry.build(
    [
        Agency(a, a, k)
        for a, k in [
            ("gateway", "gateway"),
            ("hub", "hub"),
            ("police", "police"),
            ("health", "health"),
            ("education", "education"),
        ]
    ],
    [],
)
AGREEMENTS = (
    Agreement(
        "isa-req",
        frozenset({"hub"}),
        frozenset({"police", "health"}),
        frozenset({"InformationRequest"}),
        frozenset({"child-safeguarding"}),
        frozenset({"uk-gdpr-6-1-e"}),
        date(2026, 1, 1),
        date(2027, 12, 31),
    ),
    Agreement(
        "isa-resp",
        frozenset({"police", "health"}),
        frozenset({"hub"}),
        frozenset({"InformationResponse"}),
        frozenset({"child-safeguarding"}),
        frozenset({"uk-gdpr-6-1-e"}),
        date(2026, 1, 1),
        date(2027, 12, 31),
    ),
)
REQUEST = MessageRecord(
    "req-1",
    "CASE-1",
    None,
    "InformationRequest",
    "hub",
    ("police",),
    "Red",
    None,
    datetime(2026, 11, 23, tzinfo=UTC),
    State.ROUTED,
)


def facts(**changes: object) -> HeaderFields:
    base: dict[str, object] = dict(
        message_id="m-1",
        correlation_id="CASE-1",
        created_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        message_type="InformationRequest",
        sender="hub",
        recipients=("police",),
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e",),
    )
    base.update(changes)
    return HeaderFields(**base)  # type: ignore[arg-type]


def decide(f: HeaderFields, original: MessageRecord | None = None) -> object:
    return route(f, REGISTRY, AGREEMENTS, "gateway", TODAY, original)


def test_allowed_share_is_delivered_with_its_agreement() -> None:
    assert decide(facts(recipients=("police", "health"))) == Deliver(
        ("police", "health"), ("isa-req",)
    )


def test_share_without_agreement_is_denied_by_default() -> None:
    decision = decide(facts(recipients=("education",)))
    assert decision == Reject(
        "policy", "no agreement lets hub send InformationRequest to education"
    )


def test_one_forbidden_recipient_rejects_the_whole_message() -> None:
    decision = decide(facts(recipients=("police", "education")))
    assert isinstance(decision, Reject) and decision.check == "policy"


def test_unknown_recipient_is_named() -> None:
    assert decide(facts(recipients=("fire",))) == Reject(
        "unknown-recipient", "recipient 'fire' is not a registered agency"
    )


def test_gateway_cannot_be_addressed_or_impersonated() -> None:
    assert decide(facts(recipients=("gateway",))).check == "unknown-recipient"  # type: ignore[attr-defined]
    assert decide(facts(sender="gateway")).check == "unknown-sender"  # type: ignore[attr-defined]


@pytest.mark.parametrize("message_type", ["NonDelivery", "Escalation"])
def test_edges_cannot_issue_gateway_notices(message_type: str) -> None:
    decision = decide(facts(message_type=message_type, purpose="gateway-operations"))
    assert decision == Reject("policy", f"only the gateway issues {message_type}")


def test_response_answers_the_request_it_replies_to() -> None:
    f = facts(
        message_type="InformationResponse",
        sender="police",
        recipients=("hub",),
        in_reply_to="req-1",
    )
    assert decide(f, REQUEST) == Deliver(("hub",), ("isa-resp",), answers="req-1")


def test_positive_receipt_goes_back_to_the_original_sender() -> None:
    f = facts(
        message_type="DeliveryReceipt",
        sender="police",
        recipients=("hub",),
        purpose="gateway-operations",
        in_reply_to="req-1",
        receipt_outcome="positive",
    )
    assert decide(f, REQUEST) == ForwardReceipt("req-1", "hub", positive=True)


def test_receipt_from_a_non_recipient_is_rejected() -> None:
    f = facts(
        message_type="DeliveryReceipt",
        sender="health",
        recipients=("hub",),
        purpose="gateway-operations",
        in_reply_to="req-1",
        receipt_outcome="positive",
    )
    assert decide(f, REQUEST) == Reject(
        "reply", "health replied to req-1 but was not its recipient"
    )


def test_receipt_redirected_to_someone_else_is_rejected() -> None:
    f = facts(
        message_type="DeliveryReceipt",
        sender="police",
        recipients=("health",),
        purpose="gateway-operations",
        in_reply_to="req-1",
        receipt_outcome="positive",
    )
    assert decide(f, REQUEST) == Reject("reply", "DeliveryReceipt for req-1 goes to hub only")


def test_receipt_for_an_unknown_message_is_rejected() -> None:
    f = facts(
        message_type="DeliveryReceipt",
        sender="police",
        recipients=("hub",),
        purpose="gateway-operations",
        in_reply_to="nope",
        receipt_outcome="positive",
    )
    assert decide(f, None) == Reject(
        "reply", "nope, which this DeliveryReceipt replies to, was never routed here"
    )


def test_case_content_cannot_travel_as_gateway_operations() -> None:
    assert decide(facts(purpose="gateway-operations")).check == "policy"  # type: ignore[attr-defined]
