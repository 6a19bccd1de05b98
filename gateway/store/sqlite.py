"""The embedded tracking store: one SQLite file, zero set-up.

Why these settings:
- The stdlib ``sqlite3`` runs on one dedicated worker thread, so the event
  loop never blocks on disk and the connection never crosses threads; no
  extra dependency is needed.
- WAL lets ``mash-gateway track`` read while the router writes.
- ``synchronous=FULL``: the router acks a broker message only after its state
  change is durable. Under WAL, NORMAL may lose the last commits on power
  loss, which would forget a claim (re-opening a replay window) or a routed
  state (making the later receipt illegal). FULL fsyncs each commit; the
  router batches nothing, so that is one fsync per state change.
- ``busy_timeout`` lets a second process (the CLI, a second router) wait for
  the write lock instead of failing at once; writes take it up front with
  ``BEGIN IMMEDIATE`` so a read-then-write never deadlocks.
- Timestamps are stored as fixed-width UTC ISO-8601 text (``...000000Z``),
  so text order is time order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

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
from gateway.store.migrations import SQLITE, migrations, migrations_table
from gateway.store.rows import DEADLINE_COLUMNS, closing_event, deadline_of

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
CREATE_MIGRATIONS_TABLE = migrations_table(SQLITE)
MIGRATIONS = migrations(SQLITE)


def to_text(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError(f"timestamp {at.isoformat()} has no timezone; pass an aware UTC datetime")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_text(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class SqliteStore:
    """A TrackingStore in the SQLite file at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await self._run(self._connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    async def _run(self, work: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError(f"tracking store {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"tracking store {self.path} is not open")
        return self._conn

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open tracking store {self.path}: {exc}") from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"tracking store {self.path} cannot use WAL (journal mode {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare tracking store {self.path}: {exc}") from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(CREATE_MIGRATIONS_TABLE)
        with self._write(conn):
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            current = row[0] or 0
            newest = MIGRATIONS[-1].version
            if current > newest:
                raise StoreError(
                    f"tracking store {self.path} has schema version {current}, newer than this "
                    f"gateway's {newest}; upgrade the gateway"
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at)"
                    " VALUES (?, ?, ?)",
                    (migration.version, migration.description, to_text(utc_now())),
                )

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        """One write transaction, taking the write lock up front."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def _transaction(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._db()
            try:
                with self._write(conn):
                    return work(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"tracking store {self.path}: {what} failed: {exc}") from exc

        return await self._run(run)

    async def _query(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return work(self._db())
            except sqlite3.Error as exc:
                raise StoreError(f"tracking store {self.path}: {what} failed: {exc}") from exc

        return await self._run(run)

    async def schema_version(self) -> int:
        row = await self._query(
            "reading the schema version",
            lambda c: c.execute("SELECT MAX(version) FROM schema_migrations").fetchone(),
        )
        return int(row[0] or 0)

    async def record_submitted(self, message: MessageRecord, at: datetime) -> bool:
        """Record ``message`` as submitted at ``at`` (its ``state`` is ignored)."""
        return await self._transaction(
            f"recording message {message.message_id}",
            lambda conn: _insert_message(conn, message, to_text(at)),
        )

    async def admit(self, message: MessageRecord, header_digest: str, at: datetime) -> Admission:
        """Claim the id and record the message as submitted, in one transaction."""

        def work(conn: sqlite3.Connection) -> Admission:
            claimed = _claim(conn, message.message_id, header_digest)
            if claimed is ClaimResult.REPLAY:
                return Admission(claimed, None)
            current = _state(conn, message.message_id)
            if current is None:
                _insert_message(conn, message, to_text(at))
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
        """Apply ``event`` through the lifecycle, and ``deadlines``, in one write transaction."""

        def work(conn: sqlite3.Connection) -> Outcome | None:
            current = _state(conn, message_id)
            if current is None:
                return None
            outcome = transition(current, event)
            stamp = to_text(at)
            if outcome.changed:
                _append_transition(conn, message_id, outcome.state, stamp, reason, detail)
            if deadlines is not None:
                _apply_deadlines(conn, deadlines, stamp)
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
        stamp = to_text(at)
        await self._transaction(
            f"recording {state.value} for {message_id}",
            lambda conn: _append_transition(conn, message_id, state, stamp, reason, detail),
        )

    async def claim_message(self, message_id: str, header_digest: str) -> ClaimResult:
        return await self._transaction(
            f"claiming {message_id}", lambda conn: _claim(conn, message_id, header_digest)
        )

    async def mark_handled(self, agency: str, message_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            return bool(
                conn.execute(
                    "INSERT OR IGNORE INTO handled (agency, message_id) VALUES (?, ?)",
                    (agency, message_id),
                ).rowcount
            )

        return await self._transaction(f"marking {message_id} handled by {agency}", work)

    async def was_handled(self, agency: str, message_id: str) -> bool:
        found = await self._query(
            f"reading whether {agency} handled {message_id}",
            lambda c: c.execute(
                "SELECT 1 FROM handled WHERE agency = ? AND message_id = ?", (agency, message_id)
            ).fetchone(),
        )
        return found is not None

    async def message(self, message_id: str) -> MessageRecord | None:
        found = await self._query(
            f"reading message {message_id}",
            lambda c: self._messages(c, "m.message_id = ?", message_id),
        )
        return found[0] if found else None

    async def case_messages(self, correlation_id: str) -> list[MessageRecord]:
        return await self._query(
            f"reading case {correlation_id}",
            lambda c: self._messages(c, "m.correlation_id = ?", correlation_id),
        )

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        return await self._query(
            f"reading the timeline of {message_id}",
            lambda c: self._timeline(c, "t.message_id = ?", message_id),
        )

    async def case_timeline(self, correlation_id: str) -> list[TimelineEntry]:
        return await self._query(
            f"reading the timeline of case {correlation_id}",
            lambda c: self._timeline(c, "m.correlation_id = ?", correlation_id),
        )

    async def fire_due(self, now: datetime, limit: int, fire: Fire) -> int:
        """One router per SQLite file: select, fire outside any transaction, then record.

        A crash between firing and recording fires again at start-up with the
        same escalation ids, which recipients' edges hand over once.
        """
        stamp = to_text(now)
        due = await self._query(
            "reading due deadlines",
            lambda c: _deadlines(
                c,
                "d.next_at IS NOT NULL AND d.next_at <= ? ORDER BY d.next_at LIMIT ?",
                (stamp, limit),
            ),
        )
        if not due:
            return 0
        firings = await fire(due)
        return await self._transaction(
            "recording escalations", lambda conn: sum(_record_firing(conn, f) for f in firings)
        )

    async def case_deadlines(self, correlation_id: str) -> list[Deadline]:
        return await self._query(
            f"reading the deadlines of case {correlation_id}",
            lambda c: _deadlines(
                c, "d.correlation_id = ? ORDER BY d.started_at, d.deadline_id", (correlation_id,)
            ),
        )

    async def case_deadline_events(self, correlation_id: str) -> list[DeadlineEventEntry]:
        rows = await self._query(
            f"reading the deadline events of case {correlation_id}",
            lambda c: c.execute(
                "SELECT e.deadline_id, e.at, e.event, e.level, e.message_id, e.reason"
                " FROM deadline_events e JOIN deadlines d ON d.deadline_id = e.deadline_id"
                " WHERE d.correlation_id = ? ORDER BY e.at, e.seq",
                (correlation_id,),
            ).fetchall(),
        )
        return [
            DeadlineEventEntry(r[0], from_text(r[1]), DeadlineEvent(r[2]), r[3], r[4], r[5])
            for r in rows
        ]

    async def deadline_counts(self, now: datetime) -> list[DeadlineCount]:
        stamp = to_text(now)
        rows = await self._query(
            "counting deadlines",
            lambda c: c.execute(
                "SELECT debtor, kind, rag,"
                " SUM(closed_at IS NULL),"
                " SUM(closed_at IS NULL AND due_at <= ?),"
                " SUM(breached = 1 OR (closed_at IS NULL AND due_at <= ?))"
                " FROM deadlines GROUP BY debtor, kind, rag ORDER BY debtor, kind, rag",
                (stamp, stamp),
            ).fetchall(),
        )
        return [DeadlineCount(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def overdue_deadlines(self, now: datetime, limit: int) -> list[Deadline]:
        return await self._query(
            "reading overdue deadlines",
            lambda c: _deadlines(
                c,
                "d.closed_at IS NULL AND d.due_at <= ? ORDER BY d.due_at, d.deadline_id LIMIT ?",
                (to_text(now), limit),
            ),
        )

    async def messages_between(self, start: datetime, end: datetime) -> list[MessageRecord]:
        return await self._query(
            "reading the messages of a period",
            lambda c: self._messages(
                c, "m.created_at >= ? AND m.created_at < ?", to_text(start), to_text(end)
            ),
        )

    async def deadlines_between(self, start: datetime, end: datetime) -> list[Deadline]:
        return await self._query(
            "reading the deadlines of a period",
            lambda c: _deadlines(
                c,
                "d.started_at >= ? AND d.started_at < ? ORDER BY d.started_at, d.deadline_id",
                (to_text(start), to_text(end)),
            ),
        )

    async def rejections_between(self, start: datetime, end: datetime) -> list[TimelineEntry]:
        return await self._query(
            "reading the rejections of a period",
            lambda c: self._timeline(
                c, "t.state = 'rejected' AND t.at >= ? AND t.at < ?", to_text(start), to_text(end)
            ),
        )

    @staticmethod
    def _messages(conn: sqlite3.Connection, where: str, *params: str) -> list[MessageRecord]:
        """Messages matching ``where`` (a constant of this module, never user text)."""
        rows = conn.execute(
            "SELECT message_id, correlation_id, in_reply_to, message_type, sender, rag,"  # noqa: S608
            " deadline, created_at, state"
            f" FROM messages m WHERE {where} ORDER BY created_at, message_id",
            params,
        ).fetchall()
        recipients: dict[str, list[str]] = {r[0]: [] for r in rows}
        for message_id, agency in conn.execute(
            "SELECT r.message_id, r.agency FROM message_recipients r"  # noqa: S608
            f" JOIN messages m ON m.message_id = r.message_id WHERE {where}"
            " ORDER BY r.message_id, r.position",
            params,
        ):
            recipients[message_id].append(agency)
        return [
            MessageRecord(
                message_id=r[0],
                correlation_id=r[1],
                in_reply_to=r[2],
                message_type=r[3],
                sender=r[4],
                recipients=tuple(recipients[r[0]]),
                rag=r[5],
                deadline=None if r[6] is None else from_text(r[6]),
                created_at=from_text(r[7]),
                state=State(r[8]),
            )
            for r in rows
        ]

    @staticmethod
    def _timeline(conn: sqlite3.Connection, where: str, *params: str) -> list[TimelineEntry]:
        rows = conn.execute(
            "SELECT t.message_id, t.state, t.at, t.reason, t.detail FROM transitions t"  # noqa: S608
            f" JOIN messages m ON m.message_id = t.message_id WHERE {where}"
            " ORDER BY t.at, t.seq",
            params,
        ).fetchall()
        return [TimelineEntry(r[0], State(r[1]), from_text(r[2]), r[3], r[4]) for r in rows]


def _claim(conn: sqlite3.Connection, message_id: str, header_digest: str) -> ClaimResult:
    if conn.execute(
        "INSERT OR IGNORE INTO claims (message_id, header_digest) VALUES (?, ?)",
        (message_id, header_digest),
    ).rowcount:
        return ClaimResult.FIRST
    (seen,) = conn.execute(
        "SELECT header_digest FROM claims WHERE message_id = ?", (message_id,)
    ).fetchone()
    return ClaimResult.REPEAT if seen == header_digest else ClaimResult.REPLAY


def _state(conn: sqlite3.Connection, message_id: str) -> State | None:
    row = conn.execute("SELECT state FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    return None if row is None else State(row[0])


def _insert_message(conn: sqlite3.Connection, message: MessageRecord, stamp: str) -> bool:
    inserted = conn.execute(
        "INSERT OR IGNORE INTO messages (message_id, correlation_id, in_reply_to,"
        " message_type, sender, rag, deadline, created_at, state, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.message_id,
            message.correlation_id,
            message.in_reply_to,
            message.message_type,
            message.sender,
            message.rag,
            None if message.deadline is None else to_text(message.deadline),
            to_text(message.created_at),
            State.SUBMITTED.value,
            stamp,
        ),
    ).rowcount
    if not inserted:
        return False
    conn.executemany(
        "INSERT INTO message_recipients (message_id, position, agency) VALUES (?, ?, ?)",
        [(message.message_id, i, r) for i, r in enumerate(message.recipients)],
    )
    conn.execute(
        "INSERT INTO transitions (message_id, state, at) VALUES (?, ?, ?)",
        (message.message_id, State.SUBMITTED.value, stamp),
    )
    return True


def _append_transition(
    conn: sqlite3.Connection,
    message_id: str,
    state: State,
    stamp: str,
    reason: str | None,
    detail: str | None,
) -> None:
    if state is State.REJECTED and not reason:
        raise StoreError(f"message {message_id}: a rejected transition needs a reason")
    updated = conn.execute(
        "UPDATE messages SET state = ?, updated_at = ? WHERE message_id = ?",
        (state.value, stamp, message_id),
    ).rowcount
    if not updated:
        raise UnknownMessage(f"tracking store has no message {message_id}")
    conn.execute(
        "INSERT INTO transitions (message_id, state, at, reason, detail) VALUES (?, ?, ?, ?, ?)",
        (message_id, state.value, stamp, reason, detail),
    )


def _deadlines(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[Deadline]:
    """Deadlines matching ``where`` (a constant of this module, never user text)."""
    rows = conn.execute(
        f"SELECT {DEADLINE_COLUMNS} FROM deadlines d WHERE {where}",  # noqa: S608
        params,
    ).fetchall()
    return [deadline_of(r, from_text) for r in rows]


def _apply_deadlines(conn: sqlite3.Connection, changes: DeadlineChanges, stamp: str) -> None:
    conn.executemany(
        "INSERT INTO deadlines (deadline_id, message_id, correlation_id, kind, debtor, creditor,"
        " rag, started_at, due_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (deadline_id) DO NOTHING",
        [
            (
                d.deadline_id,
                d.message_id,
                d.correlation_id,
                d.kind.value,
                d.debtor,
                d.creditor,
                d.rag,
                to_text(d.started_at),
                to_text(d.due_at),
                None if d.next_at is None else to_text(d.next_at),
            )
            for d in changes.opened
        ],
    )
    for closure in changes.closures:
        _close(conn, closure, stamp)
    for change in changes.reschedules:
        _reschedule(conn, change, stamp)


def _close(conn: sqlite3.Connection, closure: Closure, stamp: str) -> None:
    where, params = ["closed_at IS NULL"], []
    for column, value in (
        ("message_id", closure.message_id),
        ("correlation_id", closure.correlation_id),
        ("debtor", closure.debtor),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if closure.kinds:
        where.append(f"kind IN ({', '.join('?' for _ in closure.kinds)})")
        params.extend(sorted(k.value for k in closure.kinds))
    rows = conn.execute(
        f"SELECT deadline_id, due_at FROM deadlines WHERE {' AND '.join(where)}",  # noqa: S608
        params,
    ).fetchall()
    for deadline_id, due in rows:
        late = due < stamp
        conn.execute(
            "UPDATE deadlines SET closed_at = ?, closed_by = ?, next_at = NULL,"
            " breached = breached OR ? WHERE deadline_id = ?",
            (stamp, closure.by, late, deadline_id),
        )
        event = closing_event(closure, late)
        _event(conn, deadline_id, stamp, event, None, closure.by, closure.reason)


def _reschedule(conn: sqlite3.Connection, change: Reschedule, stamp: str) -> None:
    updated = conn.execute(
        "UPDATE deadlines SET rag = ?, due_at = ?, next_at = ?"
        " WHERE deadline_id = ? AND rag = ? AND closed_at IS NULL",
        (
            change.new_rag,
            to_text(change.due_at),
            None if change.next_at is None else to_text(change.next_at),
            change.deadline_id,
            change.old_rag,
        ),
    ).rowcount
    if updated:
        _event(conn, change.deadline_id, stamp, DeadlineEvent.RERATED, None, None, change.reason)


def _record_firing(conn: sqlite3.Connection, firing: Firing) -> int:
    """Record one escalation once: a repeat (same deadline and level) changes nothing."""
    plan = firing.plan
    stamp = to_text(plan.escalated_at)
    inserted = conn.execute(
        "INSERT INTO deadline_events (deadline_id, at, event, level, message_id)"
        " VALUES (?, ?, 'escalated', ?, ?) ON CONFLICT DO NOTHING",
        (plan.deadline.deadline_id, stamp, plan.level, plan.message_id),
    ).rowcount
    if not inserted:
        return 0
    conn.execute(
        "UPDATE deadlines SET level = ?, breached = 1,"
        " next_at = CASE WHEN closed_at IS NULL THEN ? ELSE NULL END WHERE deadline_id = ?",
        (
            plan.level,
            None if plan.next_at is None else to_text(plan.next_at),
            plan.deadline.deadline_id,
        ),
    )
    if _insert_message(conn, firing.record, stamp):
        _append_transition(
            conn,
            plan.message_id,
            State.ROUTED,
            stamp,
            None,
            f"level {plan.level} for {plan.deadline.deadline_id}",
        )
    return 1


def _event(
    conn: sqlite3.Connection,
    deadline_id: str,
    stamp: str,
    event: DeadlineEvent,
    level: int | None,
    message_id: str | None,
    reason: str | None,
) -> None:
    conn.execute(
        "INSERT INTO deadline_events (deadline_id, at, event, level, message_id, reason)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (deadline_id, stamp, event.value, level, message_id, reason),
    )
