"""Which deadlines a routed message opens, closes or re-rates, and what each escalation says.

Pure: a routed message's verified header, a policy and instants in; deadline
values out. The routing plan carries them to the store with the state change
that causes them; the escalator fires what falls due.

Decisions written down here:
- Deadlines start when the gateway routes a message, by the gateway's
  clock: a sender's own ``created_at`` could be wrong or forged. A deadline
  the sender stated in the header wins only when it is earlier than the
  policy's (a request may need an answer sooner, never later) and still in
  the future (a past one is a stale template, not a wish to escalate now).
- One deadline per debtor: a request to three partners is three response
  deadlines, so one silent partner escalates alone.
- Delivery: every routed business message, to each recipient; closed by that
  recipient's receipt, positive or negative, or by its answer.
- Response: an InformationRequest with a RAG rating, to each recipient;
  closed by that recipient's InformationResponse in reply, or by its
  negative receipt (the request can then never be answered, and the
  sender already has the NonDelivery-style notice).
- Decision: a Referral routed to the hub; closed by any Decision the hub
  sends in the same case (a decision covers the case, and hubs decide on a
  case, not on one referral).
- A RAG change is a hub message in the case stating a different RAG. It
  recomputes the case's open response deadlines from their original start
  (deadlines.recompute_on_rag_change); a level already fired stays fired.
- An escalation's message id is derived from the deadline and level, so a
  firing repeated after a crash carries the same id and recipients' edges
  hand it over once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.core import deadlines as dl
from gateway.core.envelope import HeaderFields
from gateway.core.registry import Registry

ESCALATION_NAMESPACE = uuid.UUID("6f3b6a52-1f0e-4d5c-9a57-3c2f7c1b8e40")
DEFAULT_CONTACT_ROLE = "MASH team manager"
LAST_LEVEL = 2


class Kind(StrEnum):
    DELIVERY = "delivery"
    RESPONSE = "response"
    DECISION = "decision"


@dataclass(frozen=True)
class Deadline:
    """One thing one agency owes: a receipt, an answer or a decision, and its ladder position.

    ``level`` counts the escalations fired so far; ``next_at`` is when the
    next one fires (None once closed or after the last level).
    """

    deadline_id: str
    message_id: str
    correlation_id: str
    kind: Kind
    debtor: str
    creditor: str
    rag: str | None
    started_at: datetime
    due_at: datetime
    next_at: datetime | None
    level: int = 0
    closed_at: datetime | None = None
    closed_by: str | None = None
    breached: bool = False

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class Closure:
    """Close the open deadlines that match: of one message, or of a whole case.

    ``kinds`` empty means every kind; ``debtor`` None means every debtor.
    ``met`` False ends a deadline that can no longer be met (a negative
    receipt, a rejection), with ``reason``.
    """

    debtor: str | None
    by: str
    kinds: frozenset[Kind] = frozenset()
    message_id: str | None = None
    correlation_id: str | None = None
    met: bool = True
    reason: str | None = None


@dataclass(frozen=True)
class Reschedule:
    """A re-rated response deadline: its new RAG, due time and next firing."""

    deadline_id: str
    old_rag: str
    new_rag: str
    due_at: datetime
    next_at: datetime | None
    reason: str


@dataclass(frozen=True)
class EscalationPlan:
    """One escalation to send: who gets it and what it says (ids and roles only)."""

    message_id: str
    deadline: Deadline
    level: int
    recipients: tuple[str, ...]
    contacts: tuple[dl.EscalationContact, ...]
    escalated_at: datetime
    next_at: datetime | None


BUSINESS_TYPES = frozenset({"Referral", "InformationRequest", "InformationResponse", "Decision"})


def deadline_id(message_id: str, kind: Kind, debtor: str) -> str:
    return f"{message_id}/{kind.value}/{debtor}"


def next_fire(due: datetime, level: int, policy: dl.DeadlinePolicy) -> datetime | None:
    """When the escalation after ``level`` fires: level 1 at the deadline, 2 after the grace."""
    if level >= LAST_LEVEL:
        return None
    return dict(dl.ladder(due, policy))[level + 1]


def opened_by(
    message: HeaderFields, routed_at: datetime, policy: dl.DeadlinePolicy, hub: str
) -> list[Deadline]:
    """The deadlines a routed message starts."""
    if message.message_type not in BUSINESS_TYPES:
        return []
    opened = [
        _deadline(message, Kind.DELIVERY, r, routed_at, dl.delivery_deadline(policy, routed_at))
        for r in message.recipients
    ]
    if message.message_type == "InformationRequest" and message.rag is not None:
        due = dl.response_deadline(policy, message.rag, routed_at)
        stated = message.deadline
        if stated is not None and routed_at < stated < due:
            due = stated
        opened += [_deadline(message, Kind.RESPONSE, r, routed_at, due) for r in message.recipients]
    if message.message_type == "Referral" and hub in message.recipients:
        due = dl.decision_deadline(policy, routed_at)
        opened.append(_deadline(message, Kind.DECISION, hub, routed_at, due))
    return opened


def _deadline(
    message: HeaderFields, kind: Kind, debtor: str, start: datetime, due: datetime
) -> Deadline:
    return Deadline(
        deadline_id=deadline_id(message.message_id, kind, debtor),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        kind=kind,
        debtor=debtor,
        creditor=message.sender,
        rag=message.rag if kind is Kind.RESPONSE else None,
        started_at=start,
        due_at=due,
        next_at=due,
    )


def closed_by(message: HeaderFields, hub: str) -> list[Closure]:
    """The deadlines a routed message meets (or ends, for a negative receipt)."""
    by = message.message_id
    if message.message_type == "DeliveryReceipt" and message.in_reply_to:
        if message.receipt_outcome == "positive":
            return [Closure(message.sender, by, frozenset({Kind.DELIVERY}), message.in_reply_to)]
        reason = f"negative receipt from {message.sender}"
        return [
            Closure(message.sender, by, message_id=message.in_reply_to, met=False, reason=reason)
        ]
    closures = []
    if message.message_type in BUSINESS_TYPES and message.in_reply_to:
        # Any reply proves delivery; an InformationResponse also answers.
        kinds = {Kind.DELIVERY}
        if message.message_type == "InformationResponse":
            kinds.add(Kind.RESPONSE)
        closures.append(
            Closure(message.sender, by, frozenset(kinds), message_id=message.in_reply_to)
        )
    if message.message_type == "Decision" and message.sender == hub:
        closures.append(
            Closure(hub, by, frozenset({Kind.DECISION}), correlation_id=message.correlation_id)
        )
    return closures


def ended_by_rejection(message_id: str, check: str) -> Closure:
    """A message rejected after routing owes nothing more to anyone."""
    return Closure(None, message_id, message_id=message_id, met=False, reason=f"rejected: {check}")


def rerates(message: HeaderFields, hub: str) -> bool:
    """Whether routing ``message`` may re-rate its case: the hub stating a RAG."""
    return message.sender == hub and message.rag is not None


def rerated(
    message: HeaderFields,
    open_deadlines: Iterable[Deadline],
    policy: dl.DeadlinePolicy,
    hub: str,
) -> list[Reschedule]:
    """Response deadlines of the case to recompute when the hub states a new RAG.

    A new due time already past fires at the escalator's next tick.
    """
    rag = message.rag
    if rag is None or not rerates(message, hub):
        return []
    changes = []
    for deadline in open_deadlines:
        if (
            deadline.kind is not Kind.RESPONSE
            or deadline.rag is None
            or deadline.rag == rag
            or not deadline.is_open
        ):
            continue
        due = dl.recompute_on_rag_change(policy, deadline.started_at, deadline.rag, rag)
        changes.append(
            Reschedule(
                deadline_id=deadline.deadline_id,
                old_rag=deadline.rag,
                new_rag=rag,
                due_at=due,
                next_at=next_fire(due, deadline.level, policy),
                reason=f"RAG {deadline.rag} to {rag} in {message.message_id}",
            )
        )
    return changes


def escalation_contacts(
    policy: dl.DeadlinePolicy, registry: Registry, hub: str
) -> tuple[dl.EscalationContact, ...]:
    """The area's contacts, or the hub's registered addresses when none are configured."""
    if policy.contacts:
        return policy.contacts
    agency = registry.agency(hub)
    return tuple(dl.EscalationContact(DEFAULT_CONTACT_ROLE, hub, email=c) for c in agency.contacts)


def plan_escalation(
    deadline: Deadline,
    contacts: Sequence[dl.EscalationContact],
    policy: dl.DeadlinePolicy,
    gateway: str,
    now: datetime,
) -> EscalationPlan:
    """The next level for a deadline that has fallen due.

    Level 1 reminds the debtor and tells the creditor; level 2 goes to the
    escalation contacts' agencies. Both name the contacts to call.
    """
    level = deadline.level + 1
    if level == 1:
        wanted: Iterable[str] = (deadline.debtor, deadline.creditor)
    else:
        wanted = (c.agency for c in contacts)
    recipients = tuple(dict.fromkeys(a for a in wanted if a != gateway))
    return EscalationPlan(
        message_id=str(uuid.uuid5(ESCALATION_NAMESPACE, f"{deadline.deadline_id}#{level}")),
        deadline=deadline,
        level=level,
        recipients=recipients,
        contacts=tuple(contacts),
        escalated_at=now,
        next_at=next_fire(deadline.due_at, level, policy),
    )
