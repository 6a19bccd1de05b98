"""The PostgreSQL tracking store, for several routers sharing one store.

Same contract and tests as SqliteStore. What PostgreSQL adds:
- Row locks instead of one writer: ``advance`` takes the message row
  ``FOR UPDATE``, so two routers applying events to one message serialise
  on that row only; claims and deadlines rely on primary keys with
  ``ON CONFLICT DO NOTHING``.
- ``fire_due`` selects due deadlines ``FOR UPDATE SKIP LOCKED`` and holds
  the transaction while the escalator publishes, so a deadline is fired by
  one router at a time; if that router dies, its connection drops, the
  locks go with it, and another router fires the deadline (with the same
  escalation ids, which edges hand over once).
- Migrations run under a transaction-scoped advisory lock, so routers
  starting together migrate once.

The URL is asyncpg's: ``postgresql://user@host:port/db``; extra query
parameters are server settings, e.g. ``?search_path=mash`` for a schema.
Commits are durable with PostgreSQL's default ``synchronous_commit=on``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from gateway.core.deadline_rules import Closure, Deadline, Reschedule
from gateway.core.lifecycle import Event, Outcome, State, transition
from gateway.core.records import (
    Admission,
    ClaimResult,
    DeadlineChanges,
    DeadlineCount,
    DeadlineEvent,
    DeadlineEventEntry,
    Fire,
    Firing,
    MessageRecord,
    TimelineEntry,
)
from gateway.infra.clock import utc_now
from gateway.store import StoreError, UnknownMessage
from gateway.store.migrations import POSTGRES, migrations, migrations_table
from gateway.store.rows import DEADLINE_COLUMNS, closing_event, deadline_of

T = TypeVar("T")
Connection = Any  # asyncpg ships no type hints for its connection and records

POOL_SIZE = 4
CREATE_MIGRATIONS_TABLE = migrations_table(POSTGRES)
MIGRATIONS = migrations(POSTGRES)
# Taken for the migration transaction, so routers starting together migrate once.
MIGRATION_LOCK_KEY = 0x6D617368  # "mash"


class PostgresStore:
    """A TrackingStore in the PostgreSQL database ``url`` names."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    @property
    def _where(self) -> str:
        """The URL without credentials, for error messages."""
        return self.url.split("@")[-1]

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=POOL_SIZE)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot open tracking store {self._where}: {exc}") from exc
        try:
            await self._transaction("migrating", self._migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _transaction(self, what: str, work: Callable[[Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreError(f"tracking store {self._where} is not open")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"tracking store {self._where}: {what} failed: {exc}") from exc

    async def _query(self, what: str, work: Callable[[Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreError(f"tracking store {self._where} is not open")
        try:
            async with self._pool.acquire() as conn:
                return await work(conn)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"tracking store {self._where}: {what} failed: {exc}") from exc

    async def _migrate(self, conn: Connection) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        newest = MIGRATIONS[-1].version
        if current > newest:
            raise StoreError(
                f"tracking store {self._where} has schema version {current}, newer than this "
                f"gateway's {newest}; upgrade the gateway"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at)"
                " VALUES ($1, $2, $3)",
                migration.version,
                migration.description,
                utc_now(),
            )

    async def schema_version(self) -> int:
        return int(
            await self._query(
                "reading the schema version",
                lambda c: c.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"),
            )
        )

    async def record_submitted(self, message: MessageRecord, at: datetime) -> bool:
        """Record ``message`` as submitted at ``at`` (its ``state`` is ignored)."""
        return await self._transaction(
            f"recording message {message.message_id}",
            lambda conn: _insert_message(conn, message, _aware(at)),
        )

    async def admit(self, message: MessageRecord, header_digest: str, at: datetime) -> Admission:
        async def work(conn: Connection) -> Admission:
            claimed = await _claim(conn, message.message_id, header_digest)
            if claimed is ClaimResult.REPLAY:
                return Admission(claimed, None)
            current = await _state(conn, message.message_id)
            if current is None:
                await _insert_message(conn, message, _aware(at))
                current = State.SUBMITTED
            return Admission(claimed, current)

        return await self._transaction(f"admitting {message.message_id}", work)

    async def advance(
        self,
        message_id: str,
        event: Event,
        at: datetime,
        reason: str | None = None,
        detail: str | None = None,
        deadlines: DeadlineChanges | None = None,
    ) -> Outcome | None:
        async def work(conn: Connection) -> Outcome | None:
            current = await _state(conn, message_id)
            if current is None:
                return None
            outcome = transition(current, event)
            if outcome.changed:
                await _append_transition(conn, message_id, outcome.state, at, reason, detail)
            if deadlines is not None:
                await _apply_deadlines(conn, deadlines, at)
            return outcome

        return await self._transaction(f"applying {event.value} to {message_id}", work)

    async def record_transition(
        self,
        message_id: str,
        state: State,
        at: datetime,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        await self._transaction(
            f"recording {state.value} for {message_id}",
            lambda conn: _append_transition(conn, message_id, state, _aware(at), reason, detail),
        )

    async def claim_message(self, message_id: str, header_digest: str) -> ClaimResult:
        return await self._transaction(
            f"claiming {message_id}", lambda conn: _claim(conn, message_id, header_digest)
        )

    async def mark_handled(self, agency: str, message_id: str) -> bool:
        async def work(conn: Connection) -> bool:
            inserted = await conn.fetchval(
                "INSERT INTO handled (agency, message_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                agency,
                message_id,
            )
            return inserted is not None

        return await self._transaction(f"marking {message_id} handled by {agency}", work)

    async def was_handled(self, agency: str, message_id: str) -> bool:
        found = await self._query(
            f"reading whether {agency} handled {message_id}",
            lambda c: c.fetchval(
                "SELECT 1 FROM handled WHERE agency = $1 AND message_id = $2", agency, message_id
            ),
        )
        return found is not None

    async def message(self, message_id: str) -> MessageRecord | None:
        found = await self._query(
            f"reading message {message_id}",
            lambda c: _messages(c, "m.message_id = $1", message_id),
        )
        return found[0] if found else None

    async def case_messages(self, correlation_id: str) -> list[MessageRecord]:
        return await self._query(
            f"reading case {correlation_id}",
            lambda c: _messages(c, "m.correlation_id = $1", correlation_id),
        )

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        return await self._query(
            f"reading the timeline of {message_id}",
            lambda c: _timeline(c, "t.message_id = $1", message_id),
        )

    async def case_timeline(self, correlation_id: str) -> list[TimelineEntry]:
        return await self._query(
            f"reading the timeline of case {correlation_id}",
            lambda c: _timeline(c, "m.correlation_id = $1", correlation_id),
        )

    async def messages_between(self, start: datetime, end: datetime) -> list[MessageRecord]:
        return await self._query(
            "reading the messages of a period",
            lambda c: _messages(
                c, "m.created_at >= $1 AND m.created_at < $2", _aware(start), _aware(end)
            ),
        )

    async def deadlines_between(self, start: datetime, end: datetime) -> list[Deadline]:
        return await self._query(
            "reading the deadlines of a period",
            lambda c: _deadlines(
                c,
                "d.started_at >= $1 AND d.started_at < $2 ORDER BY d.started_at, d.deadline_id",
                _aware(start),
                _aware(end),
            ),
        )

    async def rejections_between(self, start: datetime, end: datetime) -> list[TimelineEntry]:
        return await self._query(
            "reading the rejections of a period",
            lambda c: _timeline(
                c, "t.state = 'rejected' AND t.at >= $1 AND t.at < $2", _aware(start), _aware(end)
            ),
        )

    async def fire_due(self, now: datetime, limit: int, fire: Fire) -> int:
        """Lock due rows with SKIP LOCKED, fire while holding them, record, commit."""

        async def work(conn: Connection) -> int:
            due = await _deadlines(
                conn,
                "d.next_at IS NOT NULL AND d.next_at <= $1 ORDER BY d.next_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                _aware(now),
                limit,
            )
            if not due:
                return 0
            recorded = 0
            for firing in await fire(due):
                recorded += await _record_firing(conn, firing)
            return recorded

        return await self._transaction("firing due deadlines", work)

    async def case_deadlines(self, correlation_id: str) -> list[Deadline]:
        return await self._query(
            f"reading the deadlines of case {correlation_id}",
            lambda c: _deadlines(
                c, "d.correlation_id = $1 ORDER BY d.started_at, d.deadline_id", correlation_id
            ),
        )

    async def case_deadline_events(self, correlation_id: str) -> list[DeadlineEventEntry]:
        rows = await self._query(
            f"reading the deadline events of case {correlation_id}",
            lambda c: c.fetch(
                "SELECT e.deadline_id, e.at, e.event, e.level, e.message_id, e.reason"
                " FROM deadline_events e JOIN deadlines d ON d.deadline_id = e.deadline_id"
                " WHERE d.correlation_id = $1 ORDER BY e.at, e.seq",
                correlation_id,
            ),
        )
        return [DeadlineEventEntry(r[0], r[1], DeadlineEvent(r[2]), r[3], r[4], r[5]) for r in rows]

    async def deadline_counts(self, now: datetime) -> list[DeadlineCount]:
        rows = await self._query(
            "counting deadlines",
            lambda c: c.fetch(
                "SELECT debtor, kind, rag,"
                " COUNT(*) FILTER (WHERE closed_at IS NULL),"
                " COUNT(*) FILTER (WHERE closed_at IS NULL AND due_at <= $1),"
                " COUNT(*) FILTER (WHERE breached OR (closed_at IS NULL AND due_at <= $1))"
                " FROM deadlines GROUP BY debtor, kind, rag ORDER BY debtor, kind, rag",
                _aware(now),
            ),
        )
        return [DeadlineCount(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def overdue_deadlines(self, now: datetime, limit: int) -> list[Deadline]:
        return await self._query(
            "reading overdue deadlines",
            lambda c: _deadlines(
                c,
                "d.closed_at IS NULL AND d.due_at <= $1 ORDER BY d.due_at, d.deadline_id LIMIT $2",
                _aware(now),
                limit,
            ),
        )


def _as_is(value: datetime) -> datetime:
    """asyncpg returns timestamptz columns as aware datetimes already."""
    return value


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError(f"timestamp {at.isoformat()} has no timezone; pass an aware UTC datetime")
    return at


async def _messages(conn: Connection, where: str, *params: object) -> list[MessageRecord]:
    """Messages matching ``where`` (a constant of this module, never user text)."""
    rows = await conn.fetch(
        "SELECT m.message_id, m.correlation_id, m.in_reply_to, m.message_type, m.sender, m.rag,"  # noqa: S608
        " m.deadline, m.created_at, m.state,"
        " ARRAY(SELECT r.agency FROM message_recipients r"
        "       WHERE r.message_id = m.message_id ORDER BY r.position)"
        f" FROM messages m WHERE {where} ORDER BY m.created_at, m.message_id",
        *params,
    )
    return [
        MessageRecord(
            message_id=r[0],
            correlation_id=r[1],
            in_reply_to=r[2],
            message_type=r[3],
            sender=r[4],
            recipients=tuple(r[9]),
            rag=r[5],
            deadline=r[6],
            created_at=r[7],
            state=State(r[8]),
        )
        for r in rows
    ]


async def _timeline(conn: Connection, where: str, *params: object) -> list[TimelineEntry]:
    rows = await conn.fetch(
        "SELECT t.message_id, t.state, t.at, t.reason, t.detail FROM transitions t"  # noqa: S608
        f" JOIN messages m ON m.message_id = t.message_id WHERE {where}"
        " ORDER BY t.at, t.seq",
        *params,
    )
    return [TimelineEntry(r[0], State(r[1]), r[2], r[3], r[4]) for r in rows]


async def _claim(conn: Connection, message_id: str, header_digest: str) -> ClaimResult:
    inserted = await conn.fetchval(
        "INSERT INTO claims (message_id, header_digest) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        message_id,
        header_digest,
    )
    if inserted is not None:
        return ClaimResult.FIRST
    seen = await conn.fetchval("SELECT header_digest FROM claims WHERE message_id = $1", message_id)
    return ClaimResult.REPEAT if seen == header_digest else ClaimResult.REPLAY


async def _state(conn: Connection, message_id: str) -> State | None:
    """The message's state, its row locked until the transaction ends."""
    found = await conn.fetchval(
        "SELECT state FROM messages WHERE message_id = $1 FOR UPDATE", message_id
    )
    return None if found is None else State(found)


async def _insert_message(conn: Connection, message: MessageRecord, at: datetime) -> bool:
    inserted = await conn.fetchval(
        "INSERT INTO messages (message_id, correlation_id, in_reply_to, message_type, sender,"
        " rag, deadline, created_at, state, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING 1",
        message.message_id,
        message.correlation_id,
        message.in_reply_to,
        message.message_type,
        message.sender,
        message.rag,
        message.deadline,
        _aware(message.created_at),
        State.SUBMITTED.value,
        at,
    )
    if inserted is None:
        return False
    await conn.executemany(
        "INSERT INTO message_recipients (message_id, position, agency) VALUES ($1, $2, $3)",
        [(message.message_id, i, r) for i, r in enumerate(message.recipients)],
    )
    await conn.execute(
        "INSERT INTO transitions (message_id, state, at) VALUES ($1, $2, $3)",
        message.message_id,
        State.SUBMITTED.value,
        at,
    )
    return True


async def _append_transition(
    conn: Connection,
    message_id: str,
    state: State,
    at: datetime,
    reason: str | None,
    detail: str | None,
) -> None:
    if state is State.REJECTED and not reason:
        raise StoreError(f"message {message_id}: a rejected transition needs a reason")
    updated = await conn.execute(
        "UPDATE messages SET state = $1, updated_at = $2 WHERE message_id = $3",
        state.value,
        at,
        message_id,
    )
    if updated == "UPDATE 0":
        raise UnknownMessage(f"tracking store has no message {message_id}")
    await conn.execute(
        "INSERT INTO transitions (message_id, state, at, reason, detail)"
        " VALUES ($1, $2, $3, $4, $5)",
        message_id,
        state.value,
        at,
        reason,
        detail,
    )


async def _deadlines(conn: Connection, where: str, *params: object) -> list[Deadline]:
    """Deadlines matching ``where`` (a constant of this module, never user text)."""
    rows = await conn.fetch(
        f"SELECT {DEADLINE_COLUMNS} FROM deadlines d WHERE {where}",  # noqa: S608
        *params,
    )
    return [deadline_of(r, _as_is) for r in rows]


async def _apply_deadlines(conn: Connection, changes: DeadlineChanges, at: datetime) -> None:
    if changes.opened:
        await conn.executemany(
            "INSERT INTO deadlines (deadline_id, message_id, correlation_id, kind, debtor,"
            " creditor, rag, started_at, due_at, next_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            [
                (
                    d.deadline_id,
                    d.message_id,
                    d.correlation_id,
                    d.kind.value,
                    d.debtor,
                    d.creditor,
                    d.rag,
                    d.started_at,
                    d.due_at,
                    d.next_at,
                )
                for d in changes.opened
            ],
        )
    for closure in changes.closures:
        await _close(conn, closure, at)
    for change in changes.reschedules:
        await _reschedule(conn, change, at)


async def _close(conn: Connection, closure: Closure, at: datetime) -> None:
    where: list[str] = ["closed_at IS NULL"]
    params: list[object] = []
    for column, value in (
        ("message_id", closure.message_id),
        ("correlation_id", closure.correlation_id),
        ("debtor", closure.debtor),
    ):
        if value is not None:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    if closure.kinds:
        params.append(sorted(k.value for k in closure.kinds))
        where.append(f"kind = ANY(${len(params)}::text[])")
    rows = await conn.fetch(
        f"SELECT deadline_id, due_at FROM deadlines WHERE {' AND '.join(where)}"  # noqa: S608
        " FOR UPDATE",
        *params,
    )
    for deadline_id, due in rows:
        late = due < at
        await conn.execute(
            "UPDATE deadlines SET closed_at = $1, closed_by = $2, next_at = NULL,"
            " breached = breached OR $3 WHERE deadline_id = $4",
            at,
            closure.by,
            late,
            deadline_id,
        )
        event = closing_event(closure, late)
        await _event(conn, deadline_id, at, event, None, closure.by, closure.reason)


async def _reschedule(conn: Connection, change: Reschedule, at: datetime) -> None:
    updated = await conn.execute(
        "UPDATE deadlines SET rag = $1, due_at = $2, next_at = $3"
        " WHERE deadline_id = $4 AND rag = $5 AND closed_at IS NULL",
        change.new_rag,
        change.due_at,
        change.next_at,
        change.deadline_id,
        change.old_rag,
    )
    if updated != "UPDATE 0":
        await _event(conn, change.deadline_id, at, DeadlineEvent.RERATED, None, None, change.reason)


async def _record_firing(conn: Connection, firing: Firing) -> int:
    """Record one escalation once: a repeat (same deadline and level) changes nothing."""
    plan = firing.plan
    at = plan.escalated_at
    inserted = await conn.fetchval(
        "INSERT INTO deadline_events (deadline_id, at, event, level, message_id)"
        " VALUES ($1, $2, 'escalated', $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
        plan.deadline.deadline_id,
        at,
        plan.level,
        plan.message_id,
    )
    if inserted is None:
        return 0
    await conn.execute(
        "UPDATE deadlines SET level = $1, breached = TRUE,"
        " next_at = CASE WHEN closed_at IS NULL THEN $2::timestamptz ELSE NULL END"
        " WHERE deadline_id = $3",
        plan.level,
        plan.next_at,
        plan.deadline.deadline_id,
    )
    if await _insert_message(conn, firing.record, at):
        await _append_transition(
            conn,
            plan.message_id,
            State.ROUTED,
            at,
            None,
            f"level {plan.level} for {plan.deadline.deadline_id}",
        )
    return 1


async def _event(
    conn: Connection,
    deadline_id: str,
    at: datetime,
    event: DeadlineEvent,
    level: int | None,
    message_id: str | None,
    reason: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO deadline_events (deadline_id, at, event, level, message_id, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        deadline_id,
        at,
        event.value,
        level,
        message_id,
        reason,
    )
