"""The tracking store: what the router knows about each message, and every state change.

It holds header facts, states, claims and edge idempotency marks; never a
payload, never personal data. ``reason`` and ``detail`` carry check names,
ids and digests only.

``TrackingStore`` is the contract; SQLite (embedded, zero set-up) implements
it today and a PostgreSQL store for several routers can follow, passing the
same suite (tests/integration/test_store.py). Every timestamp is passed in
by the caller as a timezone-aware datetime: the store never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from gateway.errors import GatewayError
from gateway.lifecycle import Event, Outcome, State


class StoreError(GatewayError):
    """The tracking store cannot be opened or refused a write; the message names which."""


class UnknownMessage(StoreError):
    """A transition for a message id the store has never recorded."""


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


@dataclass(frozen=True)
class TimelineEntry:
    message_id: str
    state: State
    at: datetime
    reason: str | None = None
    detail: str | None = None


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
    ) -> Outcome | None:
        """Apply ``event`` via the lifecycle atomically; None for an unknown message.

        Raises IllegalTransition (writing nothing) for an impossible move.
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


SQLITE_PREFIX = "sqlite:///"


def store_from_url(url: str) -> TrackingStore:
    """The store a URL names; ``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute."""
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix(SQLITE_PREFIX))
    raise StoreError(
        f"unsupported store URL {url!r}: expected sqlite:///relative.db or sqlite:////absolute.db"
    )
