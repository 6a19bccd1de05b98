"""Which deadlines a routed message opens, meets and re-rates, and how escalations are planned."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core import deadline_rules as rules
from gateway.core import deadlines as dl
from gateway.core.deadline_rules import Kind
from gateway.core.envelope import HeaderFields

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # Monday 10:00 in London (GMT)
POLICY = dl.default_policy()
HUB = "hub"
MANAGER = dl.EscalationContact("MASH team manager", HUB, email="managers@hub.example")


def message(message_type: str, sender: str = HUB, **facts: object) -> HeaderFields:
    base: dict[str, object] = {
        "message_id": "m-1",
        "correlation_id": "case-1",
        "message_type": message_type,
        "sender": sender,
        "recipients": ("health", "police"),
        "created_at": T0,
        "purpose": "child-safeguarding",
        "lawful_bases": ("uk-gdpr-6-1-e",),
    }
    base.update(facts)
    return HeaderFields(**base)  # type: ignore[arg-type]


def kinds(opened: list[rules.Deadline]) -> list[tuple[Kind, str]]:
    return sorted((d.kind, d.debtor) for d in opened)


def test_a_request_owes_a_receipt_and_an_answer_from_each_recipient() -> None:
    opened = rules.opened_by(message("InformationRequest", rag="Red"), T0, POLICY, HUB)
    assert kinds(opened) == [
        (Kind.DELIVERY, "health"),
        (Kind.DELIVERY, "police"),
        (Kind.RESPONSE, "health"),
        (Kind.RESPONSE, "police"),
    ]
    response = next(d for d in opened if d.kind is Kind.RESPONSE)
    assert response.due_at == T0 + timedelta(hours=4) and response.creditor == HUB
    delivery = next(d for d in opened if d.kind is Kind.DELIVERY)
    assert delivery.due_at == T0 + timedelta(minutes=15) and delivery.rag is None


def test_an_earlier_deadline_stated_by_the_sender_wins_a_later_or_past_one_does_not() -> None:
    sooner = T0 + timedelta(hours=1)
    policy_due = T0 + timedelta(hours=4)
    cases = ((sooner, sooner), (T0 + timedelta(days=9), policy_due), (T0, policy_due))
    for stated, expected in cases:
        request = message("InformationRequest", rag="Red", deadline=stated)
        opened = rules.opened_by(request, T0, POLICY, HUB)
        assert {d.due_at for d in opened if d.kind is Kind.RESPONSE} == {expected}


def test_a_referral_to_the_hub_owes_a_decision_by_the_next_working_day() -> None:
    referral = message("Referral", sender="police", recipients=(HUB,))
    opened = rules.opened_by(referral, T0, POLICY, HUB)
    assert kinds(opened) == [(Kind.DECISION, HUB), (Kind.DELIVERY, HUB)]
    decision = next(d for d in opened if d.kind is Kind.DECISION)
    assert decision.due_at == T0 + timedelta(days=1) and decision.creditor == "police"


def test_system_messages_and_unrated_requests_open_no_answer_deadline() -> None:
    assert rules.opened_by(message("DeliveryReceipt"), T0, POLICY, HUB) == []
    assert rules.opened_by(message("Escalation"), T0, POLICY, HUB) == []
    unrated = rules.opened_by(message("InformationRequest"), T0, POLICY, HUB)
    assert {d.kind for d in unrated} == {Kind.DELIVERY}


def test_what_each_reply_closes() -> None:
    positive = message("DeliveryReceipt", "health", in_reply_to="req", receipt_outcome="positive")
    assert rules.closed_by(positive, HUB) == [
        rules.Closure("health", "m-1", frozenset({Kind.DELIVERY}), message_id="req")
    ]
    negative = message("DeliveryReceipt", "health", in_reply_to="req", receipt_outcome="negative")
    (ended,) = rules.closed_by(negative, HUB)
    assert not ended.met and ended.kinds == frozenset() and ended.message_id == "req"
    answer = message("InformationResponse", "health", in_reply_to="req")
    (met,) = rules.closed_by(answer, HUB)
    assert met.kinds == {Kind.DELIVERY, Kind.RESPONSE} and met.debtor == "health"
    decision = message("Decision", HUB)
    (decided,) = rules.closed_by(decision, HUB)
    assert decided.correlation_id == "case-1" and decided.kinds == {Kind.DECISION}
    assert rules.closed_by(message("Decision", "police"), HUB) == []


def test_a_rag_upgrade_recomputes_open_responses_from_their_start() -> None:
    opened = rules.opened_by(message("InformationRequest", rag="Green"), T0, POLICY, HUB)
    upgrade = message("Decision", HUB, message_id="d-1", rag="Red")
    changes = rules.rerated(upgrade, opened, POLICY, HUB)
    assert len(changes) == 2
    assert {c.due_at for c in changes} == {T0 + timedelta(hours=4)}
    assert changes[0].reason == "RAG Green to Red in d-1"
    # Only the hub re-rates, and a message with the same RAG changes nothing.
    assert rules.rerated(replace(upgrade, sender="police"), opened, POLICY, HUB) == []
    assert rules.rerated(replace(upgrade, rag="Green"), opened, POLICY, HUB) == []


def test_a_rerated_deadline_already_escalated_keeps_its_level() -> None:
    (response,) = [
        d
        for d in rules.opened_by(message("InformationRequest", rag="Green"), T0, POLICY, HUB)
        if d.kind is Kind.RESPONSE and d.debtor == "health"
    ]
    escalated = replace(response, level=1)
    (change,) = rules.rerated(message("Decision", HUB, rag="Red"), [escalated], POLICY, HUB)
    assert change.next_at == T0 + timedelta(hours=5)  # level 2 after the 1 h grace


def test_level_one_goes_to_the_silent_agency_and_the_sender_level_two_to_contacts() -> None:
    (response,) = [
        d
        for d in rules.opened_by(message("InformationRequest", rag="Red"), T0, POLICY, HUB)
        if d.kind is Kind.RESPONSE and d.debtor == "police"
    ]
    now = response.due_at + timedelta(seconds=1)
    first = rules.plan_escalation(response, (MANAGER,), POLICY, "gateway", now)
    assert first.level == 1 and first.recipients == ("police", HUB)
    assert first.next_at == response.due_at + timedelta(hours=1)
    second = rules.plan_escalation(replace(response, level=1), (MANAGER,), POLICY, "gateway", now)
    assert second.level == 2 and second.recipients == (HUB,) and second.next_at is None
    assert first.message_id != second.message_id
    again = rules.plan_escalation(response, (MANAGER,), POLICY, "gateway", now + timedelta(hours=1))
    assert again.message_id == first.message_id  # a repeat after a crash carries the same id


def test_without_configured_contacts_the_hubs_registered_addresses_are_used() -> None:
    from gateway.core.registry import Agency, Registry

    registry = Registry.build([Agency(HUB, "Hub", "hub", ("a@hub.example", "b@hub.example"))], [])
    contacts = rules.escalation_contacts(POLICY, registry, HUB)
    assert [c.email for c in contacts] == ["a@hub.example", "b@hub.example"]
    configured = replace(POLICY, contacts=(MANAGER,))
    assert rules.escalation_contacts(configured, registry, HUB) == (MANAGER,)
