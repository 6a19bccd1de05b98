"""The routing plan: everything the router does with one message, as an ordered list of effects.

Pure: a routing decision (or a refusal before one: an envelope that did not
verify, a reused id) and the facts it needs in; effects out. The router
shell carries them out in order, in one loop, and acks the broker message
only after the last, so a crash anywhere repeats the plan and loses no step.
Every effect is safe to repeat: the audit trail takes a repeated record,
the store applies a repeated transition as a no-op, and edges hand a
message (or a notice) over once by its id.

The order is the guarantee:
- ``Audit`` first: the trail records a decision before the change it records.
- ``Record`` (one store transaction) before ``Publish``: a message is
  ``routed`` before anyone can receipt it, so a fast receipt, even at
  another router, never finds it still submitted. What a reply does to its
  original (delivered, answered) and every deadline a message opens, meets
  or re-rates go in that same transaction.
- A refusal quarantines the message and publishes the NonDelivery before it
  records ``rejected``: that state is terminal and a redelivered copy in it
  is skipped, so the notice must already be out. A repeated notice carries
  the same id (derived from the refused copy and the check), so the
  sender's edge hands it over once.
- Every refusal has one shape (``Audit``, ``Quarantine``, ``SendNonDelivery``
  when the sender can be told, ``Record`` when the store tracks the message),
  whether the envelope failed, the id was replayed, routing said no or an
  inbox refused the message.
- A message whose broker login is not its claimed sender's (sender_login)
  is only audited and quarantined: nobody is told, nothing is recorded.
- No NonDelivery answers a notice (a receipt, a NonDelivery, an Escalation):
  reply_rules' table says what a NonDelivery may refer to. None goes to the
  gateway or to an agency that is not registered.
- A reply refused by that table (check ``reply``) is rejected like any
  refusal: only its own state and deadlines end; the message it named keeps
  its state and its deadlines stay open.

The broker ack is not an effect: the consumer acks when the plan is done.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.core import audit_chain, notices, reply_rules
from gateway.core.audit_chain import Outcome
from gateway.core.deadline_rules import (
    Deadline,
    closed_by,
    ended_by_rejection,
    opened_by,
    rerated,
    rerates,
)
from gateway.core.deadlines import DeadlinePolicy
from gateway.core.envelope import EnvelopeError, HeaderFields
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.lifecycle import Event, State
from gateway.core.records import Admission, ClaimResult, DeadlineChanges, Transition
from gateway.core.routing import Deliver, ForwardReceipt, Reject, RoutingDecision
from gateway.core.sender_login import SENDER_LOGIN_CHECK

NON_DELIVERY_NAMESPACE = uuid.UUID("0b6f4d8e-2c1a-4f7e-9d3b-5a8c6e1f2b74")
# The FailedCheck a NonDelivery names for each envelope check the router runs.
ENVELOPE_CHECKS = {
    "container": "undecodable",
    "header": "header-schema",
    "signature": "signature",
    "key": "key",
    "key-scope": "key-scope",
    "timestamp": "timestamp",
    "replay": "replay",
    "ciphertext": "ciphertext",
}
# A redelivered message found in these states is routed again (edges absorb
# the duplicate by id); past them its work is done and the copy is skipped.
REDO_STATES = frozenset({State.SUBMITTED, State.ROUTED})


@dataclass(frozen=True)
class Area:
    """What a plan reads of the area's configuration."""

    gateway: str
    hub: str
    agencies: Collection[str]
    policy: DeadlinePolicy


@dataclass(frozen=True)
class Audit:
    """Append these decisions to the audit trail, durably and in order, in one flush."""

    decisions: tuple[audit_chain.Decision, ...]


@dataclass(frozen=True)
class Record:
    """Apply these transitions, and the deadline changes each carries, in one store transaction."""

    transitions: tuple[Transition, ...]


@dataclass(frozen=True)
class Publish:
    """Publish the message itself, with confirms, to each of these inboxes in turn.

    A refusal (the inbox is missing or full) ends the plan; the shell
    carries out ``inbox_unavailable``'s instead.
    """

    message: HeaderFields
    header_sha256: str
    to: tuple[str, ...]


@dataclass(frozen=True)
class Quarantine:
    """Copy the message to quarantine with ``check: reason``; ``facts`` is what is known of it."""

    message_id: str
    check: str
    reason: str
    facts: HeaderFields | ClaimedFacts | None


@dataclass(frozen=True)
class SendNonDelivery:
    """Seal ``payload`` under ``header`` as the gateway and publish it to the sender's inbox."""

    header: HeaderFields
    payload: bytes
    check: str


Effect = Audit | Record | Publish | Quarantine | SendNonDelivery
Plan = tuple[Effect, ...]


def redo(admission: Admission) -> bool:
    """Whether an admitted message is to be routed: first seen, or redelivered before done."""
    return admission.claim is not ClaimResult.REPLAY and admission.state in REDO_STATES


def reads_case(decision: RoutingDecision, message: HeaderFields, hub: str) -> bool:
    """Whether ``plan`` needs the case's deadlines: a delivery that may re-rate them."""
    return isinstance(decision, Deliver) and rerates(message, hub)


def plan(
    decision: RoutingDecision,
    message: HeaderFields,
    header_sha256: str,
    now: datetime,
    area: Area,
    case_deadlines: Sequence[Deadline] = (),
) -> Plan:
    """What follows from routing's ``decision`` on a verified, admitted message.

    ``case_deadlines`` are the case's deadlines when ``reads_case`` says the
    plan needs them.
    """
    if isinstance(decision, Reject):
        return rejected(message, header_sha256, decision, now, area)
    if isinstance(decision, ForwardReceipt):
        return _forward_receipt(message, header_sha256, decision, area)
    return _deliver(message, header_sha256, decision, now, area, case_deadlines)


def _deliver(
    message: HeaderFields,
    header_sha256: str,
    decision: Deliver,
    now: datetime,
    area: Area,
    case_deadlines: Sequence[Deadline],
) -> Plan:
    decisions = [
        audit_chain.from_header(
            message,
            header_sha256,
            Outcome.ROUTED,
            recipients=decision.recipients,
            agreement_ids=decision.agreement_ids,
        )
    ]
    changes = DeadlineChanges(
        opened=opened_by(message, now, area.policy, area.hub),
        closures=closed_by(message, area.hub),
        reschedules=rerated(message, case_deadlines, area.policy, area.hub),
    )
    transitions = [
        Transition(
            message.message_id,
            Event.ROUTED,
            detail=f"to {', '.join(decision.recipients)} under {', '.join(decision.agreement_ids)}",
            deadlines=changes,
        )
    ]
    if decision.answers is not None:
        decisions.append(
            audit_chain.from_header(
                message, header_sha256, Outcome.ANSWERED, refers_to=decision.answers
            )
        )
        transitions.append(
            Transition(decision.answers, Event.ANSWERED, detail=f"answered by {message.message_id}")
        )
    return (
        Audit(tuple(decisions)),
        Record(tuple(transitions)),
        Publish(message, header_sha256, decision.recipients),
    )


def _forward_receipt(
    receipt: HeaderFields, header_sha256: str, decision: ForwardReceipt, area: Area
) -> Plan:
    """Forward the receipt to the original's sender; the original is delivered, or refused."""
    by, original = receipt.sender, decision.original_id
    if decision.positive:
        verdict = audit_chain.from_header(
            receipt, header_sha256, Outcome.DELIVERED, refers_to=original
        )
        moved = Transition(
            original,
            Event.RECEIPTED_POSITIVE,
            detail=f"receipted by {by} in {receipt.message_id}",
        )
    else:
        verdict = audit_chain.from_header(
            receipt,
            header_sha256,
            Outcome.REJECTED,
            check=receipt.receipt_check,
            reason=f"negative receipt from {by}",
            refers_to=original,
        )
        moved = Transition(
            original,
            Event.RECEIPTED_NEGATIVE,
            reason=f"negative receipt from {by}: {receipt.receipt_check}",
            detail=receipt.message_id,
        )
    routed = audit_chain.from_header(
        receipt, header_sha256, Outcome.ROUTED, recipients=(decision.to,)
    )
    forwarded = Transition(
        receipt.message_id,
        Event.ROUTED,
        detail=f"receipt to {decision.to}",
        deadlines=DeadlineChanges(closures=closed_by(receipt, area.hub)),
    )
    return (
        Audit((routed, verdict)),
        Record((forwarded, moved)),
        Publish(receipt, header_sha256, (decision.to,)),
    )


def rejected(
    message: HeaderFields, header_sha256: str, reject: Reject, now: datetime, area: Area
) -> Plan:
    """A verified message refused: it ends ``rejected``, owing and owed nothing more."""
    check, reason = reject.check, reject.reason
    ended = Transition(
        message.message_id,
        Event.REJECTED,
        reason=f"{check}: {reason}",
        deadlines=DeadlineChanges(closures=(ended_by_rejection(message.message_id, check),)),
    )
    return _refusal(message, header_sha256, check, reason, now, area, Record((ended,)))


def inbox_unavailable(
    message: HeaderFields, header_sha256: str, agency: str, now: datetime, area: Area
) -> Plan:
    """The plan once ``agency``'s inbox refused the message: a refusal naming the inbox."""
    reason = f"the inbox of {agency} is missing or full"
    return rejected(message, header_sha256, Reject("inbox-unavailable", reason), now, area)


def replayed(message: HeaderFields, header_sha256: str, now: datetime, area: Area) -> Plan:
    """A verified message reusing another message's id: refused; that message's state is not its."""
    reason = f"message id {message.message_id} was already used by another message"
    return _refusal(message, header_sha256, "replay", reason, now, area)


def unverified(
    claimed: ClaimedFacts | None,
    error: EnvelopeError,
    body_sha256: str,
    now: datetime,
    area: Area,
) -> Plan:
    """A message whose origin did not verify: quarantined, and its claimed sender told.

    The claimed sender is told when it is a registered agency: it is the
    agency whose name was used, forged or not. Nothing is recorded in the
    store, which tracks verified messages only.
    """
    check = ENVELOPE_CHECKS.get(error.check, "undecodable")
    if claimed is not None and claimed.sender not in area.agencies:
        check = "unknown-sender"
    return _refusal(claimed, body_sha256, check, str(error), now, area)


def refused_piece(
    transfer: ClaimedFacts, header_sha256: str, check: str, reason: str, now: datetime, area: Area
) -> Plan:
    """A piece of a routed transfer that fails its check (services/piece_relay.py): the piece
    is quarantined and the sender told; the message's own record stays as routing left it,
    and the recipients' edges never hand over a transfer that lacks a good piece. One
    notice per transfer and check: its id derives from the header digest, not the piece.
    """
    return _refusal(transfer, header_sha256, check, reason, now, area)


def misbound(claimed: ClaimedFacts, reason: str) -> Plan:
    """A message published by a broker login that is not its claimed sender's: quarantined only.

    Nobody is told: a NonDelivery to the claimed sender would let any login
    send notices to any agency in its name. Nothing is recorded in the
    store, which tracks messages whose sender it can believe.
    """
    return (
        Audit((audit_chain.from_unverified(claimed, SENDER_LOGIN_CHECK, reason),)),
        Quarantine(claimed.message_id, SENDER_LOGIN_CHECK, reason, None),
    )


def _refusal(
    facts: HeaderFields | ClaimedFacts | None,
    digest: str,
    check: str,
    reason: str,
    now: datetime,
    area: Area,
    record: Record | None = None,
) -> Plan:
    """The one shape of every refusal; ``digest`` names the refused copy.

    Verified facts (a HeaderFields) are audited as such; claimed ones only where id-shaped.
    """
    if isinstance(facts, HeaderFields):
        audit = audit_chain.from_header(facts, digest, Outcome.REJECTED, check=check, reason=reason)
    else:
        audit = audit_chain.from_unverified(facts, check, reason)
    message_id = facts.message_id if facts is not None else f"unverified-{digest}"
    effects: list[Effect] = [Audit((audit,)), Quarantine(message_id, check, reason, facts)]
    if facts is not None and _may_tell(facts, area):
        effects.append(_non_delivery(facts, digest, check, reason, now, area))
    if record is not None:
        effects.append(record)
    return tuple(effects)


def _may_tell(failed: HeaderFields | ClaimedFacts, area: Area) -> bool:
    return (
        failed.sender in area.agencies
        and failed.sender != area.gateway
        and reply_rules.may_refer("NonDelivery", failed.message_type)
    )


def _non_delivery(
    failed: HeaderFields | ClaimedFacts,
    digest: str,
    check: str,
    reason: str,
    now: datetime,
    area: Area,
) -> SendNonDelivery:
    notice_id = uuid.uuid5(NON_DELIVERY_NAMESPACE, f"{failed.message_id}/{digest}/{check}")
    header = notices.notice_header(
        "NonDelivery", str(notice_id), area.gateway, (failed.sender,), failed, now
    )
    payload = notices.non_delivery(failed.message_id, None, check, reason, now)
    return SendNonDelivery(header, payload, check)
