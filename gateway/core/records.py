"""The facts the tracking store keeps, as plain values the core and the views can read.

The store (gateway/store) persists them; routing, the views and the
escalator's rules compute with them. They live in the core so that nothing
pure imports the store to name them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.core.deadline_rules import Closure, Deadline, EscalationPlan, Reschedule
from gateway.core.envelope import HeaderFields, SealedAttachment
from gateway.core.lifecycle import Event, State


class ClaimResult(StrEnum):
    FIRST = "first"  # never seen: process it
    REPEAT = "repeat"  # the same header seen again: an at-least-once redelivery, skip quietly
    REPLAY = "replay"  # a different header reusing the id: reject as a replay


@dataclass(frozen=True)
class Admission:
    """The outcome of admitting a message: its claim, and its state after admission.

    ``state`` is None for a replay; for a repeat it is where the first
    delivery got to, so the router knows whether to finish the work.
    """

    claim: ClaimResult
    state: State | None


@dataclass(frozen=True)
class MessageRecord:
    """The header facts the router tracks, and the message's current state."""

    message_id: str
    correlation_id: str
    in_reply_to: str | None
    message_type: str
    sender: str
    recipients: tuple[str, ...]
    rag: str | None
    deadline: datetime | None
    created_at: datetime
    state: State = State.SUBMITTED
    # Each attachment section as the signed header states it (sealed length and SHA-256),
    # in order: no file name, type or plaintext digest, which only the recipients can read.
    attachments: tuple[SealedAttachment, ...] = ()


def record_of(
    fields: HeaderFields, attachments: tuple[SealedAttachment, ...] = ()
) -> MessageRecord:
    """The facts the store keeps of a message, from its verified header."""
    return MessageRecord(
        message_id=fields.message_id,
        correlation_id=fields.correlation_id,
        in_reply_to=fields.in_reply_to,
        message_type=fields.message_type,
        sender=fields.sender,
        recipients=fields.recipients,
        rag=fields.rag,
        deadline=fields.deadline,
        created_at=fields.created_at,
        attachments=attachments,
    )


@dataclass(frozen=True)
class TimelineEntry:
    message_id: str
    state: State
    at: datetime
    reason: str | None = None
    detail: str | None = None


class DeadlineEvent(StrEnum):
    RERATED = "rerated"
    ESCALATED = "escalated"
    MET = "met"
    MET_LATE = "met-late"
    ENDED = "ended"  # closed without being met: a negative receipt or a rejection


@dataclass(frozen=True)
class DeadlineEventEntry:
    deadline_id: str
    at: datetime
    event: DeadlineEvent
    level: int | None = None
    message_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DeadlineChanges:
    """What a state change does to deadlines, applied in the same transaction."""

    opened: Sequence[Deadline] = ()
    closures: Sequence[Closure] = ()
    reschedules: Sequence[Reschedule] = ()


@dataclass(frozen=True)
class Transition:
    """One lifecycle event for one message, and the deadline changes it causes."""

    message_id: str
    event: Event
    reason: str | None = None
    detail: str | None = None
    deadlines: DeadlineChanges = DeadlineChanges()


@dataclass(frozen=True)
class Firing:
    """An escalation that was sent: the plan, and the message to record as routed."""

    plan: EscalationPlan
    record: MessageRecord


Fire = Callable[[list[Deadline]], Awaitable[list[Firing]]]


@dataclass(frozen=True)
class DeadlineCount:
    """Deadlines owed by one agency, of one kind and RAG: counts only, for `overdue` and metrics."""

    agency: str
    kind: str
    rag: str | None
    open: int
    overdue: int  # open and past due
    breached: int  # past due at any time, open or closed


@dataclass(frozen=True)
class FlowCount:
    """Messages one agency sent of one type in a period, and how many were refused: counts only."""

    sender: str
    message_type: str
    sent: int
    rejected: int


@dataclass(frozen=True)
class AuditHead:
    """An audit chain's head as the store keeps it at each checkpoint: a copy off the file.

    ``chain`` names the chain (its file, relative to the area); ``seq`` is the
    checkpoint's place, so the number of records up to it; ``hash`` is the
    checkpoint record's hash. A file cut back or emptied no longer holds it.
    """

    chain: str
    seq: int
    hash: str
    at: datetime
