"""The tracking store: what the router knows about each message, and every state change.

It holds header facts, states, claims and edge idempotency marks; never a
payload, never personal data. ``reason`` and ``detail`` carry check names,
ids and digests only.

``TrackingStore`` is the contract. SQLite (embedded, zero set-up) is the
default; PostgreSQL is for several routers sharing one store. Both pass the
same suite (tests/integration/test_store.py). Every timestamp is passed in
by the caller as a timezone-aware datetime: the store never reads a clock.

Deadlines live here too: the router opens and closes them in the same
transaction as the state change that causes it, and the escalator fires
them through ``fire_due``, which hands each due deadline to exactly one
caller at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.core.deadline_rules import Deadline
from gateway.core.errors import GatewayError
from gateway.core.lifecycle import Event, Outcome, State
from gateway.core.records import (
    Admission,
    ClaimResult,
    DeadlineChanges,
    DeadlineCount,
    DeadlineEventEntry,
    Fire,
    MessageRecord,
    TimelineEntry,
)

__all__ = [
    "POSTGRES_PREFIXES",
    "SQLITE_PREFIX",
    "StoreError",
    "TrackingStore",
    "UnknownMessage",
    "store_from_url",
]


class StoreError(GatewayError):
    """The tracking store cannot be opened or refused a write; the message names which."""


class UnknownMessage(StoreError):
    """A transition for a message id the store has never recorded."""


class TrackingStore(Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations (idempotent)."""

    async def close(self) -> None: ...

    async def record_submitted(self, message: MessageRecord, at: datetime) -> bool:
        """Record a new message in state submitted; False if its id is already recorded."""

    async def record_transition(
        self,
        message_id: str,
        state: State,
        at: datetime,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append a transition and make ``state`` current; rejected needs a reason."""

    async def admit(self, message: MessageRecord, header_digest: str, at: datetime) -> Admission:
        """Claim the id for the header digest and record the message, atomically."""

    async def advance(
        self,
        message_id: str,
        event: Event,
        at: datetime,
        reason: str | None = None,
        detail: str | None = None,
        deadlines: DeadlineChanges | None = None,
    ) -> Outcome | None:
        """Apply ``event`` via the lifecycle, and ``deadlines``, atomically.

        None for an unknown message. Raises IllegalTransition (writing
        nothing) for an impossible move. Deadline changes are idempotent, so
        a redelivered message may apply them again.
        """

    async def claim_message(self, message_id: str, header_digest: str) -> ClaimResult:
        """Claim a message id for the digest of its header, atomically."""

    async def message(self, message_id: str) -> MessageRecord | None: ...

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        """A message's transitions, oldest first."""

    async def case_messages(self, correlation_id: str) -> list[MessageRecord]:
        """The messages of a case, oldest first."""

    async def case_timeline(self, correlation_id: str) -> list[TimelineEntry]:
        """Every transition of every message of a case, oldest first."""

    async def mark_handled(self, agency: str, message_id: str) -> bool:
        """True the first time ``agency`` handles ``message_id`` only: the edge's idempotency."""

    async def was_handled(self, agency: str, message_id: str) -> bool:
        """Whether ``agency`` has already handed ``message_id`` to its system."""

    async def fire_due(self, now: datetime, limit: int, fire: Fire) -> int:
        """Hand up to ``limit`` deadlines whose next firing is due to ``fire``; record its firings.

        A deadline is handed to one caller at a time, across processes on
        PostgreSQL. If ``fire`` raises, nothing is recorded and the deadlines
        stay due. Returns the number of firings recorded.
        """

    async def case_deadlines(self, correlation_id: str) -> list[Deadline]:
        """The deadlines of a case, by start then id."""

    async def case_deadline_events(self, correlation_id: str) -> list[DeadlineEventEntry]:
        """Every deadline event of a case, oldest first."""

    async def deadline_counts(self, now: datetime) -> list[DeadlineCount]:
        """Open, overdue and breached deadlines by agency, kind and RAG."""

    async def overdue_deadlines(self, now: datetime, limit: int) -> list[Deadline]:
        """Open deadlines past due, most overdue first."""

    async def messages_between(self, start: datetime, end: datetime) -> list[MessageRecord]:
        """Messages created in [start, end), oldest first: the report's volumes."""

    async def deadlines_between(self, start: datetime, end: datetime) -> list[Deadline]:
        """Deadlines started in [start, end), oldest first: the report's response times."""

    async def rejections_between(self, start: datetime, end: datetime) -> list[TimelineEntry]:
        """Rejected transitions in [start, end), oldest first: the report's delivery failures."""


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
