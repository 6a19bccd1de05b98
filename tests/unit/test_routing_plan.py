"""The routing plan of every decision, without a broker or a store: what the router does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.core import deadline_rules as rules
from gateway.core import deadlines as dl
from gateway.core import notices, schemas
from gateway.core.audit_chain import Outcome
from gateway.core.deadline_rules import Kind
from gateway.core.envelope import EnvelopeError, HeaderFields
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.envelope.envelope_error import Check
from gateway.core.lifecycle import Event, State
from gateway.core.records import Admission, ClaimResult, MessageRecord
from gateway.core.registry import Agency, Registry
from gateway.core.routing import Deliver, ForwardReceipt, Reject, RoutingDecision, route
from gateway.core.routing_plan import (
    Area,
    Audit,
    Effect,
    Plan,
    Publish,
    Quarantine,
    Record,
    SendNonDelivery,
    inbox_unavailable,
    misbound,
    plan,
    reads_case,
    redo,
    replayed,
    unverified,
)
from gateway.core.sharing import Agreement
from gateway.core.vocabulary import SYSTEM_PURPOSE

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday
DIGEST = "d" * 64
UUID = "7a0e4b62-1d3c-4f5a-8e9b-2c6d0f1a3b57"  # payloads name messages by UUID
AGENCIES = ("gateway", "hub", "police", "health", "education")
REGISTRY = Registry.build([Agency(a, a, "gateway" if a == "gateway" else a) for a in AGENCIES], [])
AREA = Area("gateway", "hub", REGISTRY.agencies, dl.default_policy())
AGREEMENTS = tuple(
    Agreement(
        agreement_id,
        frozenset(senders),
        frozenset(recipients),
        frozenset({message_type}),
        frozenset({"child-safeguarding"}),
        frozenset({"uk-gdpr-6-1-e"}),
        date(2026, 1, 1),
        date(2027, 12, 31),
    )
    for agreement_id, senders, recipients, message_type in (
        ("isa-req", {"hub"}, {"police", "health"}, "InformationRequest"),
        ("isa-resp", {"police", "health"}, {"hub"}, "InformationResponse"),
        ("isa-dec", {"hub"}, {"police", "health"}, "Decision"),
    )
)
REQUEST = MessageRecord(
    "req-1",
    "CASE-1",
    None,
    "InformationRequest",
    "hub",
    ("police", "health"),
    "Red",
    None,
    NOW - timedelta(hours=1),
    State.ROUTED,
)


def header(**changes: object) -> HeaderFields:
    base: dict[str, object] = dict(
        message_id="m-1",
        correlation_id="CASE-1",
        message_type="InformationRequest",
        sender="hub",
        recipients=("police",),
        created_at=NOW,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e",),
        rag="Red",
    )
    base.update(changes)
    return HeaderFields(**base)  # type: ignore[arg-type]


def receipt(outcome: str = "positive", **changes: object) -> HeaderFields:
    facts: dict[str, object] = dict(
        message_id="rcpt-1",
        message_type="DeliveryReceipt",
        sender="police",
        recipients=("hub",),
        purpose=SYSTEM_PURPOSE,
        rag=None,
        in_reply_to="req-1",
        receipt_outcome=outcome,
        receipt_check=None if outcome == "positive" else "payload-schema",
    )
    facts.update(changes)
    return header(**facts)


def routed(message: HeaderFields, original: MessageRecord | None = None) -> tuple[object, Plan]:
    """Route ``message`` as the router does, and plan what follows."""
    decision = route(message, REGISTRY, AGREEMENTS, "gateway", NOW.date(), original)
    return decision, plan(decision, message, DIGEST, NOW, AREA)


def kinds(effects: Plan) -> list[type[Effect]]:
    return [type(e) for e in effects]


def test_a_delivery_audits_then_records_then_publishes() -> None:
    message = header()
    decision, effects = routed(message)
    assert decision == Deliver(("police",), ("isa-req",))
    audit, record, publish = effects
    assert isinstance(audit, Audit) and isinstance(record, Record)
    (decided,) = audit.decisions
    assert (decided.outcome, decided.recipients, decided.agreement_ids) == (
        Outcome.ROUTED,
        ("police",),
        ("isa-req",),
    )
    assert decided.header_sha256 == DIGEST
    (step,) = record.transitions
    assert (step.message_id, step.event) == ("m-1", Event.ROUTED)
    assert step.detail == "to police under isa-req"
    assert step.deadlines.opened == rules.opened_by(message, NOW, AREA.policy, "hub")
    assert publish == Publish(message, DIGEST, ("police",))


def test_a_delivery_to_several_recipients_publishes_to_each_and_owes_from_each() -> None:
    _, effects = routed(header(recipients=("police", "health")))
    record, publish = effects[1], effects[2]
    assert isinstance(record, Record) and isinstance(publish, Publish)
    assert publish.to == ("police", "health")
    owed = sorted((d.kind, d.debtor) for d in record.transitions[0].deadlines.opened)
    assert owed == [
        (Kind.DELIVERY, "health"),
        (Kind.DELIVERY, "police"),
        (Kind.RESPONSE, "health"),
        (Kind.RESPONSE, "police"),
    ]


def test_an_answer_records_its_request_answered_in_the_same_transaction() -> None:
    answer = header(
        message_id="resp-1",
        message_type="InformationResponse",
        sender="police",
        recipients=("hub",),
        in_reply_to="req-1",
        rag=None,
    )
    decision, effects = routed(answer, REQUEST)
    assert decision == Deliver(("hub",), ("isa-resp",), answers="req-1")
    assert kinds(effects) == [Audit, Record, Publish]
    audit, record = effects[0], effects[1]
    assert isinstance(audit, Audit) and isinstance(record, Record)
    assert [(d.outcome, d.refers_to) for d in audit.decisions] == [
        (Outcome.ROUTED, None),
        (Outcome.ANSWERED, "req-1"),
    ]
    own, request = record.transitions
    assert (own.message_id, own.event) == ("resp-1", Event.ROUTED)
    (met,) = own.deadlines.closures
    assert (met.message_id, met.debtor, met.kinds) == (
        "req-1",
        "police",
        frozenset({Kind.DELIVERY, Kind.RESPONSE}),
    )
    assert (request.message_id, request.event, request.detail) == (
        "req-1",
        Event.ANSWERED,
        "answered by resp-1",
    )


def test_an_answer_from_an_agency_never_asked_leaves_the_request_and_its_deadlines_alone() -> None:
    answer = header(
        message_id="resp-2",
        message_type="InformationResponse",
        sender="education",
        recipients=("hub",),
        in_reply_to="req-1",
        rag=None,
    )
    decision, effects = routed(answer, REQUEST)
    reason = "education replied to req-1 but was not its recipient"
    assert decision == Reject("reply", reason)
    assert_refusal(effects, "reply", reason, told=True, recorded=True)
    record = effects[-1]
    assert isinstance(record, Record)
    (own,) = record.transitions  # only the refused answer's own state and deadlines
    assert own.message_id == "resp-2"
    assert [c.message_id for c in own.deadlines.closures] == ["resp-2"]


def test_a_rag_change_from_the_hub_reads_the_case_and_reschedules_it() -> None:
    opened = rules.opened_by(header(rag="Green"), NOW - timedelta(hours=2), AREA.policy, "hub")
    rerate = header(message_id="dec-1", message_type="Decision", recipients=("police",), rag="Red")
    decision = route(rerate, REGISTRY, AGREEMENTS, "gateway", NOW.date(), None)
    assert reads_case(decision, rerate, "hub")
    effects = plan(decision, rerate, DIGEST, NOW, AREA, opened)
    record = effects[1]
    assert isinstance(record, Record)
    (change,) = record.transitions[0].deadlines.reschedules
    assert (change.old_rag, change.new_rag) == ("Green", "Red")
    assert not reads_case(decision, header(sender="police", recipients=("hub",)), "hub")
    assert not reads_case(Reject("policy", "no"), rerate, "hub")


@pytest.mark.parametrize("positive", [True, False])
def test_a_receipt_records_itself_and_its_original_in_one_transaction(positive: bool) -> None:
    message = receipt("positive" if positive else "negative")
    decision, effects = routed(message, REQUEST)
    assert decision == ForwardReceipt("req-1", "hub", positive)
    assert kinds(effects) == [Audit, Record, Publish]
    audit, record, publish = effects
    assert isinstance(audit, Audit) and isinstance(record, Record)
    routed_, verdict = audit.decisions
    assert (routed_.outcome, routed_.recipients) == (Outcome.ROUTED, ("hub",))
    forwarded, original = record.transitions
    assert (forwarded.message_id, forwarded.event, forwarded.detail) == (
        "rcpt-1",
        Event.ROUTED,
        "receipt to hub",
    )
    assert list(forwarded.deadlines.closures) == rules.closed_by(message, "hub")
    assert original.message_id == "req-1" and verdict.refers_to == "req-1"
    if positive:
        assert (verdict.outcome, verdict.check) == (Outcome.DELIVERED, None)
        assert (original.event, original.detail) == (
            Event.RECEIPTED_POSITIVE,
            "receipted by police in rcpt-1",
        )
    else:
        assert (verdict.outcome, verdict.check) == (Outcome.REJECTED, "payload-schema")
        assert verdict.reason == "negative receipt from police"
        assert original.event is Event.RECEIPTED_NEGATIVE
        assert original.reason == "negative receipt from police: payload-schema"
    assert publish == Publish(message, DIGEST, ("hub",))


def assert_refusal(effects: Plan, check: str, reason: str, told: bool, recorded: bool) -> None:
    """The one shape of a refusal: audit, quarantine, the notice if any, the record if any."""
    expected: list[type[Effect]] = [Audit, Quarantine]
    expected += [SendNonDelivery] if told else []
    expected += [Record] if recorded else []
    assert kinds(effects) == expected
    audit, quarantine = effects[0], effects[1]
    assert isinstance(audit, Audit) and isinstance(quarantine, Quarantine)
    (decided,) = audit.decisions
    assert (decided.outcome, decided.check, decided.reason) == (Outcome.REJECTED, check, reason)
    assert (quarantine.check, quarantine.reason) == (check, reason)
    if recorded:
        record = effects[-1]
        assert isinstance(record, Record)
        (step,) = record.transitions
        assert (step.event, step.reason) == (Event.REJECTED, f"{check}: {reason}")
        (ended,) = step.deadlines.closures
        assert (ended.message_id, ended.met) == (step.message_id, False)


REFUSED = [
    (header(sender="gateway"), "unknown-sender", False),  # the gateway is never told
    (header(message_type="NonDelivery", purpose=SYSTEM_PURPOSE), "policy", False),
    (header(message_type="Escalation", purpose=SYSTEM_PURPOSE), "policy", False),
    (header(recipients=("fire",)), "unknown-recipient", True),
    (header(recipients=("gateway",)), "unknown-recipient", True),
    (header(recipients=("hub",)), "policy", True),  # addressed to itself
    (header(purpose=SYSTEM_PURPOSE), "policy", True),
    (header(recipients=("education",)), "policy", True),  # no agreement
    (receipt(sender="education"), "reply", False),  # receipts are never answered
    (  # an answer from an agency the request never went to
        header(
            message_type="InformationResponse",
            sender="education",
            recipients=("hub",),
            in_reply_to="req-1",
        ),
        "reply",
        True,
    ),
    (receipt(outcome="maybe"), "header-schema", False),
]


@pytest.mark.parametrize(("message", "check", "told"), REFUSED)
def test_every_routing_refusal_has_one_shape(message: HeaderFields, check: str, told: bool) -> None:
    decision, effects = routed(message, REQUEST)
    assert isinstance(decision, Reject) and decision.check == check
    assert_refusal(effects, check, decision.reason, told, recorded=True)
    quarantine = effects[1]
    assert isinstance(quarantine, Quarantine)
    assert (quarantine.message_id, quarantine.facts) == (message.message_id, message)


def test_a_non_delivery_names_the_failed_check_and_is_signed_as_a_gateway_notice() -> None:
    message = header(message_id=UUID, recipients=("education",))
    _, effects = routed(message)
    notice = effects[2]
    assert isinstance(notice, SendNonDelivery)
    assert notice.header == notices.notice_header(
        "NonDelivery", notice.header.message_id, "gateway", ("hub",), message, NOW
    )
    assert notice.header.lawful_bases == notices.NOTICE_LAWFUL_BASES
    assert schemas.message_type(schemas.validate(notice.payload, "nd")) == "NonDelivery"
    assert b"<FailedCheck>policy</FailedCheck>" in notice.payload
    assert f"<FailedMessageId>{UUID}</FailedMessageId>".encode() in notice.payload


def test_a_refused_inbox_rejects_the_message_naming_the_inbox() -> None:
    effects = inbox_unavailable(header(), DIGEST, "police", NOW, AREA)
    reason = "the inbox of police is missing or full"
    assert_refusal(effects, "inbox-unavailable", reason, told=True, recorded=True)


def test_a_replay_is_refused_without_touching_the_message_that_owns_the_id() -> None:
    effects = replayed(header(), DIGEST, NOW, AREA)
    reason = "message id m-1 was already used by another message"
    assert_refusal(effects, "replay", reason, told=True, recorded=False)


CLAIMED = ClaimedFacts("m-1", "CASE-1", "hub", "InformationRequest")


def test_a_message_from_another_agencys_login_is_quarantined_and_nobody_told() -> None:
    reason = "published by broker login 'mash-x-education', which is not the claimed sender's"
    effects = misbound(CLAIMED, reason)
    assert_refusal(effects, "sender-login", reason, told=False, recorded=False)
    quarantine = effects[1]
    assert isinstance(quarantine, Quarantine) and quarantine.facts is None  # counted as nobody


@pytest.mark.parametrize(
    ("failed", "check"),
    [
        ("container", "undecodable"),
        ("header", "header-schema"),
        ("signature", "signature"),
        ("key", "key"),
        ("key-scope", "key-scope"),
        ("timestamp", "timestamp"),
        ("ciphertext", "ciphertext"),
        ("segments", "undecodable"),  # never raised by verify; named safely if it were
    ],
)
def test_an_unverified_envelope_is_quarantined_and_its_claimed_sender_told(
    failed: Check, check: str
) -> None:
    error = EnvelopeError(failed, "what went wrong")
    effects = unverified(CLAIMED, error, DIGEST, NOW, AREA)
    assert_refusal(effects, check, str(error), told=True, recorded=False)
    notice = effects[2]
    assert isinstance(notice, SendNonDelivery) and notice.header.recipients == ("hub",)


def test_unverified_envelopes_from_nobody_we_can_tell_are_only_quarantined() -> None:
    error = EnvelopeError("signature", "bad")
    stranger = ClaimedFacts("m-1", "CASE-1", "rogue", "InformationRequest")
    assert_refusal(
        unverified(stranger, error, DIGEST, NOW, AREA), "unknown-sender", str(error), False, False
    )
    notice = ClaimedFacts("m-1", "CASE-1", "hub", "DeliveryReceipt")
    assert_refusal(
        unverified(notice, error, DIGEST, NOW, AREA), "signature", str(error), False, False
    )
    garbage = unverified(None, EnvelopeError("container", "no"), DIGEST, NOW, AREA)
    assert_refusal(garbage, "undecodable", "container: no", told=False, recorded=False)
    quarantine = garbage[1]
    assert isinstance(quarantine, Quarantine) and quarantine.message_id == f"unverified-{DIGEST}"


def test_a_repeated_refusal_sends_the_same_notice_and_another_copy_its_own() -> None:
    message = header(recipients=("education",))

    def notice_id(effects: Plan) -> str:
        (notice,) = [e for e in effects if isinstance(e, SendNonDelivery)]
        return notice.header.message_id

    first = routed(message)[1]
    assert routed(message)[1] == first  # a redelivery repeats the plan exactly
    other_copy = plan(route_of(message), message, "e" * 64, NOW, AREA)
    other_check = inbox_unavailable(message, DIGEST, "education", NOW, AREA)
    assert len({notice_id(first), notice_id(other_copy), notice_id(other_check)}) == 3


def route_of(message: HeaderFields) -> RoutingDecision:
    return route(message, REGISTRY, AGREEMENTS, "gateway", NOW.date(), None)


@pytest.mark.parametrize(
    ("admission", "again"),
    [
        (Admission(ClaimResult.FIRST, State.SUBMITTED), True),
        (Admission(ClaimResult.REPEAT, State.SUBMITTED), True),  # crashed before routing
        (Admission(ClaimResult.REPEAT, State.ROUTED), True),  # crashed before the ack
        (Admission(ClaimResult.REPEAT, State.DELIVERED), False),
        (Admission(ClaimResult.REPEAT, State.ANSWERED), False),
        (Admission(ClaimResult.REPEAT, State.REJECTED), False),
        (Admission(ClaimResult.REPLAY, None), False),
    ],
)
def test_a_redelivered_message_is_routed_again_only_while_its_work_is_undone(
    admission: Admission, again: bool
) -> None:
    assert redo(admission) is again


def every_plan() -> list[Plan]:
    plans = [routed(m, REQUEST)[1] for m, _, _ in REFUSED]
    plans += [routed(header())[1], routed(receipt(), REQUEST)[1], routed(receipt("negative"))[1]]
    plans += [replayed(header(), DIGEST, NOW, AREA)]
    plans += [unverified(CLAIMED, EnvelopeError("key", "revoked"), DIGEST, NOW, AREA)]
    return plans


def test_every_plan_audits_first_and_writes_the_store_once() -> None:
    for effects in every_plan():
        assert isinstance(effects[0], Audit)
        assert sum(isinstance(e, Record) for e in effects) <= 1
        order = kinds(effects)
        if Publish in order:  # routed before anyone can receipt it
            assert order.index(Record) < order.index(Publish)
        if Quarantine in order and Record in order:  # rejected only once the sender is told
            assert order[-1] is Record
