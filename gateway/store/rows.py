"""Rows of the deadline tables as values: the part of reading them both stores share.

The stores differ only in how a timestamp comes back (SQLite: fixed-width
UTC text; PostgreSQL: an aware datetime), so each passes its ``instant``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from gateway.core.deadline_rules import Closure, Deadline, Kind
from gateway.core.records import DeadlineEvent

Instant = Callable[[Any], datetime]

DEADLINE_COLUMNS = (
    "d.deadline_id, d.message_id, d.correlation_id, d.kind, d.debtor, d.creditor, d.rag,"
    " d.started_at, d.due_at, d.next_at, d.level, d.closed_at, d.closed_by, d.breached"
)


def deadline_of(row: Sequence[Any], instant: Instant) -> Deadline:
    """A row selected with ``DEADLINE_COLUMNS``."""
    return Deadline(
        deadline_id=row[0],
        message_id=row[1],
        correlation_id=row[2],
        kind=Kind(row[3]),
        debtor=row[4],
        creditor=row[5],
        rag=row[6],
        started_at=instant(row[7]),
        due_at=instant(row[8]),
        next_at=None if row[9] is None else instant(row[9]),
        level=row[10],
        closed_at=None if row[11] is None else instant(row[11]),
        closed_by=row[12],
        breached=bool(row[13]),
    )


def closing_event(closure: Closure, late: bool) -> DeadlineEvent:
    """What closing one deadline records: met, met late, or ended without being met."""
    if not closure.met:
        return DeadlineEvent.ENDED
    return DeadlineEvent.MET_LATE if late else DeadlineEvent.MET
