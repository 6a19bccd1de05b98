"""The tracking store: what the router knows about each message, and every state change.

It holds header facts, states, claims and edge idempotency marks; never a
payload, never personal data. ``reason`` and ``detail`` carry check names,
ids and digests only.

``TrackingStore`` is the contract, the union of one Protocol per role
(``HandledMarks`` for the edge, ``RouterStore``, ``EscalatorStore``,
``AuditHeads`` for the router's audit log, and the read-only ``CaseReader``,
``OverdueReader``, ``WorklistReader``, ``ReportReader``, ``AuditHeadReader``). SQLite
(embedded, zero set-up) is the default; PostgreSQL is for several routers
sharing one store. One implementation serves both (``sql_store``, over the
``dialect`` each driver, ``sqlite`` and ``postgres``, fills in), and both
pass the same suite (tests/integration/test_store.py). Every timestamp is
passed in by the caller as a timezone-aware datetime: the store never reads
a clock.

Deadlines live here too: the router opens and closes them in the same
transaction as the state change that causes it, and the escalator fires
them through ``fire_due``, which hands each due deadline to exactly one
caller at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Protocol

from gateway.core.deadline_rules import Deadline
from gateway.core.errors import GatewayError
from gateway.core.lifecycle import IllegalTransition, Outcome
from gateway.core.message_search import MessageQuery
from gateway.core.quarantine import Entry, Filter, Status, Totals
from gateway.core.records import (
    Admission,
    AuditHead,
    DeadlineCount,
    DeadlineEventEntry,
    Fire,
    FlowCount,
    MessageRecord,
    TimelineEntry,
    Transition,
)

__all__ = [
    "POSTGRES_PREFIXES",
    "SQLITE_PREFIX",
    "AuditHeadReader",
    "AuditHeads",
    "CaseReader",
    "EscalatorStore",
    "HandledMarks",
    "MessageSearch",
    "OverdueReader",
    "QuarantineStore",
    "ReportReader",
    "RouterStore",
    "StoreError",
    "StoreHealth",
    "StoreReader",
    "TrackingStore",
    "WorklistReader",
    "dialect",
    "migrations",
    "opened_store",
    "postgres",
    "sql_store",
    "sqlite",
    "store_from_url",
]


class StoreError(GatewayError):
    """The tracking store cannot be opened or refused a write; the message names which."""


# One Protocol per role, so each service is given only what it uses.


class HandledMarks(Protocol):
    """The edge's idempotency marks: which messages its agency has handed to its system."""

    async def mark_handled(self, agency: str, message_id: str) -> bool:
        """True the first time ``agency`` handles ``message_id`` only."""

    async def was_handled(self, agency: str, message_id: str) -> bool:
        """Whether ``agency`` has already handed ``message_id`` to its system."""


class RouterStore(Protocol):
    """What the router records of each message, and reads back to decide."""

    async def admit(self, message: MessageRecord, header_digest: str, at: datetime) -> Admission:
        """Claim the id for the header digest and record the message, atomically."""

    async def advance(
        self, transitions: Sequence[Transition], at: datetime
    ) -> list[Outcome | IllegalTransition | None]:
        """Apply each transition via the lifecycle, and its deadline changes, in one transaction.

        One result per transition, in order: its outcome, None for an unknown
        message, or the IllegalTransition of a move the lifecycle refuses,
        which writes nothing of its own and stops none of the others (a
        receipt is recorded even when its original can no longer move).
        Raises StoreError, writing nothing, for a rejection without a
        reason. Deadline changes are idempotent, so a redelivered message
        may apply them again.
        """

    async def message(self, message_id: str) -> MessageRecord | None: ...

    async def case_deadlines(self, correlation_id: str) -> list[Deadline]: ...

    async def was_released(self, message_id: str) -> bool:
        """Whether the message is ``submitted`` again after a rejection: an operator released it."""


class EscalatorStore(Protocol):
    """What the escalator fires, and the deadline gauges it refreshes."""

    async def fire_due(self, now: datetime, limit: int, fire: Fire) -> int:
        """Hand up to ``limit`` deadlines whose next firing is due to ``fire``; record its firings.

        A deadline is handed to one caller at a time, across processes on
        PostgreSQL. If ``fire`` raises, nothing is recorded and the deadlines
        stay due. Returns the number of firings recorded.
        """

    async def deadline_counts(self, now: datetime) -> list[DeadlineCount]: ...


class AuditHeadReader(Protocol):
    """``audit verify``: the head the audit log kept here, to hold its file against."""

    async def audit_head(self, chain: str) -> AuditHead | None:
        """The head last kept for ``chain``; None if no checkpoint of it was ever kept."""


class AuditHeads(AuditHeadReader, Protocol):
    """The audit log's copy of its chain's head, off the file, moved on at each checkpoint."""

    async def keep_audit_head(self, head: AuditHead, replacing: AuditHead | None) -> bool:
        """Keep ``head`` if the kept one is still ``replacing`` (None: none yet), else False.

        A compare-and-set: a second writer of the same chain, or a writer that
        resumed a file cut back, cannot move the head without being told.
        """


class CaseReader(Protocol):
    """A message's or a case's story: ``track``, an agency's status requests, the demo."""

    async def message(self, message_id: str) -> MessageRecord | None:
        """The message's header facts and current state; None if never recorded."""

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        """A message's transitions, oldest first."""

    async def case_messages(self, correlation_id: str) -> list[MessageRecord]:
        """The messages of a case, oldest first."""

    async def case_timeline(self, correlation_id: str) -> list[TimelineEntry]:
        """Every transition of every message of a case, oldest first."""

    async def case_deadlines(self, correlation_id: str) -> list[Deadline]:
        """The deadlines of a case, by start then id."""

    async def case_deadline_events(self, correlation_id: str) -> list[DeadlineEventEntry]:
        """Every deadline event of a case, oldest first."""


class OverdueReader(Protocol):
    """``overdue``: who owes what, and how late."""

    async def deadline_counts(self, now: datetime) -> list[DeadlineCount]:
        """Open, overdue and breached deadlines by agency, kind and RAG."""

    async def overdue_deadlines(self, now: datetime, limit: int) -> list[Deadline]:
        """Open deadlines past due, most overdue first."""


class ReportReader(Protocol):
    """``report``: a period's volumes, response times and delivery failures."""

    async def message(self, message_id: str) -> MessageRecord | None: ...

    async def messages_between(self, start: datetime, end: datetime) -> list[MessageRecord]:
        """Messages created in [start, end), oldest first: the report's volumes."""

    async def deadlines_between(self, start: datetime, end: datetime) -> list[Deadline]:
        """Deadlines started in [start, end), oldest first: the report's response times."""

    async def rejections_between(self, start: datetime, end: datetime) -> list[TimelineEntry]:
        """Rejected transitions in [start, end), oldest first: the report's delivery failures."""


class WorklistReader(OverdueReader, Protocol):
    """The console's pages: today's flows, and deadlines a page at a time (keyset, not offset)."""

    async def flow_counts(self, start: datetime, end: datetime) -> list[FlowCount]:
        """Messages created in [start, end) by sender and type, with how many were rejected."""

    async def recent_deadline_counts(self, now: datetime, since: datetime) -> list[DeadlineCount]:
        """Like ``deadline_counts``, but breached counts only the open ones past due and those
        closed since ``since``: read from the open and breached indexes, not the whole history."""

    async def overdue_page(
        self, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Deadline]:
        """Open deadlines past due, most overdue first, after (due_at, deadline_id) ``after``."""

    async def coming_due(self, now: datetime, limit: int) -> list[Deadline]:
        """Open deadlines not yet due, soonest first."""

    async def breached_since(self, since: datetime, limit: int) -> list[Deadline]:
        """Deadlines closed since ``since`` that were breached (met late or ended), latest first."""


class QuarantineStore(Protocol):
    """The quarantine keeper's copies of quarantined messages, and what operators did with them."""

    async def keep_quarantined(self, entry: Entry, body: bytes) -> bool:
        """Keep a copy taken off the queue; False if the same copy is already held."""

    async def quarantined(self, which: Filter) -> list[Entry]:
        """Entries matching ``which``, oldest first."""

    async def quarantined_entry(self, entry_id: str) -> Entry | None: ...

    async def quarantined_body(self, entry_id: str) -> bytes | None:
        """The sealed envelope of a held entry; None once it is settled."""

    async def settle_quarantined(
        self, entry_id: str, status: Status, at: datetime, by: str, reason: str | None
    ) -> Entry | None:
        """Settle a held entry (its body dropped); None if it was not held (a compare-and-set)."""

    async def expire_quarantined(self, before: datetime, at: datetime) -> list[Entry]:
        """Expire every entry held since before ``before``; the entries expired."""

    async def quarantine_totals(self) -> Totals:
        """How many entries are held, and their bytes."""


class MessageSearch(Protocol):
    """``messages``: tracked messages by case, agency, type, state and period."""

    async def search_messages(self, query: MessageQuery) -> list[MessageRecord]:
        """Up to ``query.limit + 1`` matches, newest first, strictly before ``query.after``."""


class StoreReader(
    CaseReader, WorklistReader, ReportReader, AuditHeadReader, MessageSearch, Protocol
):
    """Everything the store tells without changing it: what an operator's console shows."""


class StoreHealth(Protocol):
    """``/readyz``: whether the store takes a write now."""

    async def check_writable(self) -> None:
        """Take the write lock (SQLite) or run a write that changes nothing (PostgreSQL, where a
        read-only server refuses it); raises StoreError if the store cannot be written."""


class TrackingStore(
    StoreHealth,
    HandledMarks,
    RouterStore,
    EscalatorStore,
    AuditHeads,
    QuarantineStore,
    StoreReader,
    Protocol,
):
    """The whole store: every role's methods, and opening and closing it."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations (idempotent)."""

    async def close(self) -> None: ...


SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def store_from_url(url: str) -> TrackingStore:
    """The store a URL names.

    ``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute;
    ``postgresql://user@host/db`` is PostgreSQL (asyncpg's URL, where extra
    query parameters such as ``search_path`` are server settings).
    """
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix(SQLITE_PREFIX))
    if url.startswith(POSTGRES_PREFIXES):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"unsupported store URL {url!r}: expected sqlite:///relative.db, sqlite:////absolute.db"
        " or postgresql://user@host/database"
    )


@asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[TrackingStore]:
    """The store a URL names, open (migrated) for the block and closed after it."""
    store = store_from_url(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
