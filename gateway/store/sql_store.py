"""The tracking store, written once over SQLite and PostgreSQL.

Why one implementation over a dialect, and not SQLAlchemy Core: the SQL
here is a few dozen plain statements, and both databases speak almost all
of it alike (``ON CONFLICT DO NOTHING``, ``RETURNING``, ``FILTER``). What
must differ is small. In the SQL: row locks (``FOR UPDATE``, ``SKIP
LOCKED``), the migrations' advisory lock and column types, named in
``Dialect``. In the database library: placeholders, and how a timestamp is
bound and read back, in each driver. The rest is how the two are driven,
which a query builder would not change: SQLite runs each transaction whole
on its one worker thread, PostgreSQL awaits each statement on a pooled
connection. SQLAlchemy's async engine would add three dependencies
(sqlalchemy, greenlet, aiosqlite) and cost SQLite one thread hop per
statement instead of one per transaction.

So each method builds a unit of work (a generator of statements, see
``dialect``) and hands it to its driver: ``_transaction`` for writes,
``_query`` for reads, ``_fire`` for ``fire_due``, whose locking is where
the two stores really differ (see each driver's docstring).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from gateway.core.deadline_rules import Closure, Deadline, Kind, Reschedule
from gateway.core.envelope import SealedAttachment
from gateway.core.lifecycle import IllegalTransition, Outcome, State, transition
from gateway.core.message_search import MessageQuery
from gateway.core.quarantine import Cause, Entry, Facts, Filter, Status, Totals
from gateway.core.records import (
    Admission,
    AuditHead,
    ClaimResult,
    DeadlineChanges,
    DeadlineCount,
    DeadlineEvent,
    DeadlineEventEntry,
    Fire,
    Firing,
    FlowCount,
    MessageRecord,
    TimelineEntry,
    Transition,
)
from gateway.infra.clock import utc_now
from gateway.store import StoreError
from gateway.store.dialect import Dialect, ReadInstant, Row, T, Work, sql
from gateway.store.migrations import MIGRATIONS, MIGRATIONS_TABLE

QUARANTINE_COLUMNS = (
    "entry_id, message_id, correlation_id, message_type, sender, recipients, created_at,"
    " failed_check, reason, source, quarantined_at, size, body_sha256, status, settled_at,"
    " settled_by, settle_reason"
)
RETENTION = "retention"  # who settles an entry the retention period expired
# Rows of one multi-row statement: well under both databases' parameter limits.
FIRINGS_PER_STATEMENT = 200
# The due deadlines, at most ``limit`` of them, earliest first.
Due = Callable[[int], Work[list[Deadline]]]
DEADLINE_COLUMNS = (
    "deadline_id, message_id, correlation_id, kind, debtor, creditor, rag,"
    " started_at, due_at, next_at, level, closed_at, closed_by, breached"
)


class SqlStore(ABC):
    """A TrackingStore over one SQL database; its driver subclass connects and runs the work."""

    def __init__(self, dialect: Dialect, where: str, read_instant: ReadInstant) -> None:
        self._dialect = dialect
        self._where = where  # names the store in errors, without credentials
        self._instant = read_instant  # a timestamp column as the driver returns it

    @abstractmethod
    async def _connect(self) -> bool:
        """Connect; False if already connected."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _transaction(self, what: str, work: Work[T]) -> T:
        """Run ``work`` in one write transaction; ``what`` names it in errors."""

    @abstractmethod
    async def _query(self, what: str, work: Work[T]) -> T:
        """Run ``work``, which only reads."""

    @abstractmethod
    async def _fire(self, due: Due, limit: int, fire: Fire) -> int:
        """Claim up to ``limit`` of ``due``, hand them to ``fire``, record the firings
        (``record_firings``); rows another caller holds are passed over, as SKIP LOCKED does."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations (idempotent)."""
        try:
            if await self._connect():
                await self._transaction("migrating", _migrate(self._dialect, self._where))
        except BaseException:
            await self.close()
            raise

    async def admit(self, message: MessageRecord, header_digest: str, at: datetime) -> Admission:
        work = _admit(message, header_digest, at)
        return await self._transaction(f"admitting {message.message_id}", work)

    async def advance(
        self, transitions: Sequence[Transition], at: datetime
    ) -> list[Outcome | IllegalTransition | None]:
        what = ", ".join(f"{t.event.value} to {t.message_id}" for t in transitions)
        return await self._transaction(f"applying {what}", _advance_all(transitions, at))

    async def mark_handled(self, agency: str, message_id: str) -> bool:
        inserted = await self._transaction(
            f"marking {message_id} handled by {agency}",
            _rows(
                "INSERT INTO handled (agency, message_id) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                agency,
                message_id,
            ),
        )
        return bool(inserted)

    async def was_handled(self, agency: str, message_id: str) -> bool:
        found = await self._query(
            f"reading whether {agency} handled {message_id}",
            _rows("SELECT 1 FROM handled WHERE agency = ? AND message_id = ?", agency, message_id),
        )
        return bool(found)

    async def message(self, message_id: str) -> MessageRecord | None:
        found = await self._query(
            f"reading message {message_id}",
            _with_attachments(self._messages, "m.message_id = ?", message_id),
        )
        return found[0] if found else None

    async def case_messages(self, correlation_id: str) -> list[MessageRecord]:
        return await self._query(
            f"reading case {correlation_id}",
            _with_attachments(self._messages, "m.correlation_id = ?", correlation_id),
        )

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        return await self._query(
            f"reading the timeline of {message_id}", self._timeline("t.message_id = ?", message_id)
        )

    async def case_timeline(self, correlation_id: str) -> list[TimelineEntry]:
        return await self._query(
            f"reading the timeline of case {correlation_id}",
            self._timeline("m.correlation_id = ?", correlation_id),
        )

    async def fire_due(self, now: datetime, limit: int, fire: Fire) -> int:
        def due(limit: int) -> Work[list[Deadline]]:
            return self._deadlines(
                "next_at IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?{skip_locked}",
                now,
                limit,
            )

        return await self._fire(due, limit, fire)

    async def case_deadlines(self, correlation_id: str) -> list[Deadline]:
        return await self._query(
            f"reading the deadlines of case {correlation_id}",
            self._deadlines("correlation_id = ? ORDER BY started_at, deadline_id", correlation_id),
        )

    async def case_deadline_events(self, correlation_id: str) -> list[DeadlineEventEntry]:
        rows = await self._query(
            f"reading the deadline events of case {correlation_id}",
            _rows(
                "SELECT e.deadline_id, e.at, e.event, e.level, e.message_id, e.reason"
                " FROM deadline_events e JOIN deadlines d ON d.deadline_id = e.deadline_id"
                " WHERE d.correlation_id = ? ORDER BY e.at, e.seq",
                correlation_id,
            ),
        )
        instant = self._instant
        return [
            DeadlineEventEntry(r[0], instant(r[1]), DeadlineEvent(r[2]), r[3], r[4], r[5])
            for r in rows
        ]

    async def deadline_counts(self, now: datetime) -> list[DeadlineCount]:
        rows = await self._query(
            "counting deadlines",
            _rows(
                "SELECT debtor, kind, rag,"
                " COUNT(*) FILTER (WHERE closed_at IS NULL),"
                " COUNT(*) FILTER (WHERE closed_at IS NULL AND due_at <= ?),"
                " COUNT(*) FILTER (WHERE breached OR (closed_at IS NULL AND due_at <= ?))"
                " FROM deadlines GROUP BY debtor, kind, rag ORDER BY debtor, kind, rag",
                now,
                now,
            ),
        )
        return [DeadlineCount(*r) for r in rows]

    async def overdue_deadlines(self, now: datetime, limit: int) -> list[Deadline]:
        return await self._query(
            "reading overdue deadlines",
            self._deadlines(
                "closed_at IS NULL AND due_at <= ? ORDER BY due_at, deadline_id LIMIT ?", now, limit
            ),
        )

    async def overdue_page(
        self, now: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Deadline]:
        if after is None:
            return await self.overdue_deadlines(now, limit)
        return await self._query(
            "reading a page of overdue deadlines",
            self._deadlines(
                "closed_at IS NULL AND due_at <= ? AND (due_at > ? OR (due_at = ? AND"
                " deadline_id > ?)) ORDER BY due_at, deadline_id LIMIT ?",
                now,
                after[0],
                after[0],
                after[1],
                limit,
            ),
        )

    async def coming_due(self, now: datetime, limit: int) -> list[Deadline]:
        return await self._query(
            "reading deadlines coming due",
            self._deadlines(
                "closed_at IS NULL AND due_at > ? ORDER BY due_at, deadline_id LIMIT ?", now, limit
            ),
        )

    async def breached_since(self, since: datetime, limit: int) -> list[Deadline]:
        return await self._query(
            "reading breached deadlines",
            self._deadlines(
                "breached AND closed_at >= ? ORDER BY closed_at DESC, deadline_id LIMIT ?",
                since,
                limit,
            ),
        )

    async def recent_deadline_counts(self, now: datetime, since: datetime) -> list[DeadlineCount]:
        rows = await self._query(
            "counting recent deadlines",
            _rows(
                "SELECT debtor, kind, rag, SUM(open), SUM(overdue), SUM(overdue + late) FROM ("
                " SELECT debtor, kind, rag, 1 AS open,"
                " CASE WHEN due_at <= ? THEN 1 ELSE 0 END AS overdue, 0 AS late"
                " FROM deadlines WHERE closed_at IS NULL"
                " UNION ALL SELECT debtor, kind, rag, 0, 0, 1 FROM deadlines"
                " WHERE breached AND closed_at >= ?"
                ") AS recent GROUP BY debtor, kind, rag ORDER BY debtor, kind, rag",
                now,
                since,
            ),
        )
        return [DeadlineCount(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in rows]

    async def flow_counts(self, start: datetime, end: datetime) -> list[FlowCount]:
        rows = await self._query(
            "counting the flows of a period",
            _rows(
                "SELECT sender, message_type, COUNT(*),"
                " COUNT(*) FILTER (WHERE state = 'rejected') FROM messages"
                " WHERE created_at >= ? AND created_at < ?"
                " GROUP BY sender, message_type ORDER BY sender, message_type",
                start,
                end,
            ),
        )
        return [FlowCount(*r) for r in rows]

    async def messages_between(self, start: datetime, end: datetime) -> list[MessageRecord]:
        return await self._query(
            "reading the messages of a period",
            self._messages("m.created_at >= ? AND m.created_at < ?", start, end),
        )

    async def deadlines_between(self, start: datetime, end: datetime) -> list[Deadline]:
        return await self._query(
            "reading the deadlines of a period",
            self._deadlines(
                "started_at >= ? AND started_at < ? ORDER BY started_at, deadline_id", start, end
            ),
        )

    async def rejections_between(self, start: datetime, end: datetime) -> list[TimelineEntry]:
        return await self._query(
            "reading the rejections of a period",
            self._timeline("t.state = 'rejected' AND t.at >= ? AND t.at < ?", start, end),
        )

    async def search_messages(self, query: MessageQuery) -> list[MessageRecord]:
        where: list[str] = []
        params: list[object] = []
        for clause, value in (
            ("correlation_id = ?", query.correlation_id),
            ("message_type = ?", query.message_type),
            ("state = ?", query.state.value if query.state else None),
            ("created_at >= ?", query.start),
            ("created_at < ?", query.end),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if query.agency is not None:
            where.append(
                "(sender = ? OR message_id IN"
                " (SELECT message_id FROM message_recipients WHERE agency = ?))"
            )
            params += [query.agency, query.agency]
        if query.after is not None:  # keyset: strictly before the last row shown
            # A row value: both databases seek the (created_at, message_id) index to it.
            where.append("(created_at, message_id) < (?, ?)")
            params += [query.after.created_at, query.after.message_id]
        page = (
            "SELECT message_id FROM messages"  # noqa: S608
            f" WHERE {' AND '.join(where) or '1 = 1'}"
            " ORDER BY created_at DESC, message_id DESC LIMIT ?"
        )
        found = await self._query(
            "searching messages",
            self._messages(f"m.message_id IN ({page})", *params, query.limit + 1),
        )
        return sorted(found, key=lambda m: (m.created_at, m.message_id), reverse=True)

    async def audit_head(self, chain: str) -> AuditHead | None:
        rows = await self._query(
            f"reading the audit head of {chain}",
            _rows("SELECT seq, hash, at FROM audit_heads WHERE chain = ?", chain),
        )
        return AuditHead(chain, rows[0][0], rows[0][1], self._instant(rows[0][2])) if rows else None

    async def keep_audit_head(self, head: AuditHead, replacing: AuditHead | None) -> bool:
        if replacing is None:
            work = _rows(
                "INSERT INTO audit_heads (chain, seq, hash, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                head.chain,
                head.seq,
                head.hash,
                head.at,
            )
        elif replacing.chain != head.chain or replacing.seq >= head.seq:
            raise StoreError(
                f"audit head of {head.chain}: record {head.seq} cannot replace "
                f"{replacing.chain}'s record {replacing.seq}: a head only moves on"
            )
        else:
            work = _rows(
                "UPDATE audit_heads SET seq = ?, hash = ?, at = ?"
                " WHERE chain = ? AND seq = ? AND hash = ? RETURNING 1",
                head.seq,
                head.hash,
                head.at,
                head.chain,
                replacing.seq,
                replacing.hash,
            )
        return bool(await self._transaction(f"keeping the audit head of {head.chain}", work))

    async def was_released(self, message_id: str) -> bool:
        found = await self._query(
            f"reading whether {message_id} was released",
            _rows(
                "SELECT 1 FROM messages m WHERE m.message_id = ? AND m.state = 'submitted'"
                " AND EXISTS (SELECT 1 FROM transitions t"
                " WHERE t.message_id = m.message_id AND t.state = 'rejected')",
                message_id,
            ),
        )
        return bool(found)

    async def check_writable(self) -> None:
        await self._transaction(
            "checking it takes a write",
            _rows("UPDATE schema_migrations SET description = description WHERE version < 0"),
        )

    async def keep_quarantined(self, entry: Entry, body: bytes) -> bool:
        f, c = entry.facts, entry.cause
        kept = await self._transaction(
            f"keeping quarantined {f.message_id}",
            _rows(
                f"INSERT INTO quarantine ({QUARANTINE_COLUMNS}, body)"  # noqa: S608
                f" VALUES {_tuples(18, 1)} ON CONFLICT DO NOTHING RETURNING 1",
                entry.entry_id,
                f.message_id,
                f.correlation_id,
                f.message_type,
                f.sender,
                " ".join(f.recipients),
                f.created_at,
                c.check,
                c.reason,
                c.source,
                entry.quarantined_at,
                entry.size,
                entry.body_sha256,
                entry.status.value,
                entry.settled_at,
                entry.settled_by,
                entry.settle_reason,
                body,
            ),
        )
        return bool(kept)

    async def quarantined(self, which: Filter) -> list[Entry]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if which.status is not None:
            where.append("status = ?")
            params.append(which.status.value)
        if which.since is not None:
            where.append("quarantined_at >= ?")
            params.append(which.since)
        if which.check is not None:
            where.append("failed_check = ?")
            params.append(which.check)
        if which.agency is not None:  # recipients are space-separated agency ids
            where.append("(sender = ? OR ' ' || recipients || ' ' LIKE ?)")
            params.extend([which.agency, f"% {which.agency} %"])
        return await self._query(
            "reading quarantined messages",
            self._quarantine(
                f"{' AND '.join(where)} ORDER BY quarantined_at, entry_id LIMIT ?",
                *params,
                which.limit,
            ),
        )

    async def quarantined_entry(self, entry_id: str) -> Entry | None:
        found = await self._query(
            f"reading quarantined {entry_id}", self._quarantine("entry_id = ?", entry_id)
        )
        return found[0] if found else None

    async def quarantined_body(self, entry_id: str) -> bytes | None:
        rows = await self._query(
            f"reading the body of quarantined {entry_id}",
            _rows("SELECT body FROM quarantine WHERE entry_id = ? AND status = 'held'", entry_id),
        )
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    async def settle_quarantined(
        self, entry_id: str, status: Status, at: datetime, by: str, reason: str | None
    ) -> Entry | None:
        settled = await self._transaction(
            f"settling quarantined {entry_id} as {status.value}",
            _rows(
                "UPDATE quarantine SET status = ?, settled_at = ?, settled_by = ?,"
                " settle_reason = ?, body = NULL WHERE entry_id = ? AND status = 'held'"
                " RETURNING 1",
                status.value,
                at,
                by,
                reason,
                entry_id,
            ),
        )
        return await self.quarantined_entry(entry_id) if settled else None

    async def expire_quarantined(self, before: datetime, at: datetime) -> list[Entry]:
        rows = await self._transaction(
            "expiring quarantined messages",
            _rows(
                "UPDATE quarantine SET status = 'expired', settled_at = ?, settled_by = ?,"
                " settle_reason = ?, body = NULL WHERE status = 'held' AND quarantined_at < ?"
                " RETURNING entry_id",
                at,
                RETENTION,
                "past the retention period",
                before,
            ),
        )
        expired = [await self.quarantined_entry(r[0]) for r in rows]
        return [e for e in expired if e is not None]

    async def quarantine_totals(self) -> Totals:
        ((count, size),) = await self._query(
            "counting quarantined messages",
            _rows("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine WHERE status = 'held'"),
        )
        return Totals(int(count), int(size))

    # Reads that turn rows into values. ``where`` is a constant of this module, never user text.

    def _messages(self, where: str, *params: object) -> Work[list[MessageRecord]]:
        """Messages matching ``where``, one row per recipient in one statement."""
        rows = yield sql(
            "SELECT m.message_id, m.correlation_id, m.in_reply_to, m.message_type, m.sender,"  # noqa: S608
            " m.rag, m.deadline, m.created_at, m.state, r.agency FROM messages m"
            " LEFT JOIN message_recipients r ON r.message_id = m.message_id"
            f" WHERE {where} ORDER BY m.created_at, m.message_id, r.position",
            *params,
        )
        found: dict[str, tuple[Row, list[str]]] = {}
        for row in rows:
            agencies = found.setdefault(row[0], (row, []))[1]
            if row[9] is not None:
                agencies.append(row[9])
        instant = self._instant
        return [
            MessageRecord(
                message_id=r[0],
                correlation_id=r[1],
                in_reply_to=r[2],
                message_type=r[3],
                sender=r[4],
                recipients=tuple(agencies),
                rag=r[5],
                deadline=None if r[6] is None else instant(r[6]),
                created_at=instant(r[7]),
                state=State(r[8]),
            )
            for r, agencies in found.values()
        ]

    def _quarantine(self, where: str, *params: object) -> Work[list[Entry]]:
        rows = yield sql(f"SELECT {QUARANTINE_COLUMNS} FROM quarantine WHERE {where}", *params)  # noqa: S608
        instant = self._instant
        return [
            Entry(
                entry_id=r[0],
                facts=Facts(
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    tuple(r[5].split()),
                    None if r[6] is None else instant(r[6]),
                ),
                cause=Cause(r[7], r[8], r[9]),
                quarantined_at=instant(r[10]),
                size=r[11],
                body_sha256=r[12],
                status=Status(r[13]),
                settled_at=None if r[14] is None else instant(r[14]),
                settled_by=r[15],
                settle_reason=r[16],
            )
            for r in rows
        ]

    def _timeline(self, where: str, *params: object) -> Work[list[TimelineEntry]]:
        rows = yield sql(
            "SELECT t.message_id, t.state, t.at, t.reason, t.detail FROM transitions t"  # noqa: S608
            f" JOIN messages m ON m.message_id = t.message_id WHERE {where} ORDER BY t.at, t.seq",
            *params,
        )
        instant = self._instant
        return [TimelineEntry(r[0], State(r[1]), instant(r[2]), r[3], r[4]) for r in rows]

    def _deadlines(self, where: str, *params: object) -> Work[list[Deadline]]:
        rows = yield sql(f"SELECT {DEADLINE_COLUMNS} FROM deadlines WHERE {where}", *params)  # noqa: S608
        instant = self._instant
        return [
            Deadline(
                deadline_id=r[0],
                message_id=r[1],
                correlation_id=r[2],
                kind=Kind(r[3]),
                debtor=r[4],
                creditor=r[5],
                rag=r[6],
                started_at=instant(r[7]),
                due_at=instant(r[8]),
                next_at=None if r[9] is None else instant(r[9]),
                level=r[10],
                closed_at=None if r[11] is None else instant(r[11]),
                closed_by=r[12],
                breached=bool(r[13]),
            )
            for r in rows
        ]


# Units of work that write, run inside one transaction by the driver.


def _rows(text: str, *params: object) -> Work[list[Row]]:
    """One statement's rows."""
    return (yield sql(text, *params))


def _migrate(dialect: Dialect, where: str) -> Work[None]:
    if dialect.migration_lock:
        yield sql(dialect.migration_lock)
    yield sql(MIGRATIONS_TABLE)
    ((current,),) = yield sql("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    newest = MIGRATIONS[-1].version
    if current > newest:
        raise StoreError(
            f"tracking store {where} has schema version {current}, newer than this "
            f"gateway's {newest}; upgrade the gateway"
        )
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        for statement in migration.statements:
            yield sql(statement)
        yield sql(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            migration.version,
            migration.description,
            utc_now(),
        )


def _admit(message: MessageRecord, header_digest: str, at: datetime) -> Work[Admission]:
    """Claim the id for the header digest and record the message as submitted."""
    claimed = yield from _claim(message.message_id, header_digest)
    if claimed is ClaimResult.REPLAY:
        return Admission(claimed, None)
    current = yield from _state(message.message_id)
    if current is None:
        yield from _insert_message(message, at)
        current = State.SUBMITTED
    return Admission(claimed, current)


def _advance_all(
    transitions: Sequence[Transition], at: datetime
) -> Work[list[Outcome | IllegalTransition | None]]:
    results: list[Outcome | IllegalTransition | None] = []
    for step in transitions:
        try:
            results.append((yield from _advance(step, at)))
        except IllegalTransition as refused:  # raised before the step wrote anything
            results.append(refused)
    return results


def _advance(step: Transition, at: datetime) -> Work[Outcome | None]:
    current = yield from _state(step.message_id)
    if current is None:
        return None
    outcome = transition(current, step.event)
    if outcome.changed:
        yield from _append_transition(step.message_id, outcome.state, at, step.reason, step.detail)
    yield from _apply_deadlines(step.deadlines, at)
    return outcome


def _claim(message_id: str, header_digest: str) -> Work[ClaimResult]:
    if (
        yield sql(
            "INSERT INTO claims (message_id, header_digest) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            message_id,
            header_digest,
        )
    ):
        return ClaimResult.FIRST
    ((seen,),) = yield sql("SELECT header_digest FROM claims WHERE message_id = ?", message_id)
    return ClaimResult.REPEAT if seen == header_digest else ClaimResult.REPLAY


def _state(message_id: str) -> Work[State | None]:
    """The message's state, its row locked until the transaction ends where rows can be."""
    rows = yield sql("SELECT state FROM messages WHERE message_id = ?{for_update}", message_id)
    return State(rows[0][0]) if rows else None


def _insert_message(message: MessageRecord, at: datetime) -> Work[bool]:
    """Record ``message`` as submitted at ``at`` (its ``state`` is ignored); False if it was."""
    return message.message_id in (yield from _insert_messages([message], at))


def _insert_messages(messages: Sequence[MessageRecord], at: datetime) -> Work[set[str]]:
    """Record each of ``messages`` as submitted at ``at``; the ids of those not recorded before."""
    inserted = yield sql(
        "INSERT INTO messages (message_id, correlation_id, in_reply_to, message_type, sender,"  # noqa: S608
        " rag, deadline, created_at, state, updated_at)"
        f" VALUES {_tuples(10, len(messages))} ON CONFLICT DO NOTHING RETURNING message_id",
        *(
            value
            for m in messages
            for value in (
                m.message_id,
                m.correlation_id,
                m.in_reply_to,
                m.message_type,
                m.sender,
                m.rag,
                m.deadline,
                m.created_at,
                State.SUBMITTED.value,
                at,
            )
        ),
    )
    fresh = {row[0] for row in inserted}
    recipients = [
        (m.message_id, n, agency)
        for m in messages
        if m.message_id in fresh
        for n, agency in enumerate(m.recipients)
    ]
    if recipients:
        yield sql(
            "INSERT INTO message_recipients (message_id, position, agency)"  # noqa: S608
            f" VALUES {_tuples(3, len(recipients))}",
            *(value for row in recipients for value in row),
        )
    sections = [
        (m.message_id, n, section.ciphertext_length, section.ciphertext_sha256)
        for m in messages
        if m.message_id in fresh
        for n, section in enumerate(m.attachments)
    ]
    if sections:
        yield sql(
            "INSERT INTO message_attachments"  # noqa: S608
            " (message_id, position, ciphertext_length, ciphertext_sha256)"
            f" VALUES {_tuples(4, len(sections))}",
            *(value for row in sections for value in row),
        )
    if fresh:
        yield sql(
            f"INSERT INTO transitions (message_id, state, at) VALUES {_tuples(3, len(fresh))}",  # noqa: S608
            *(
                v
                for m in messages
                if m.message_id in fresh
                for v in (m.message_id, State.SUBMITTED.value, at)
            ),
        )
    return fresh


def _with_attachments(
    messages: Callable[..., Work[list[MessageRecord]]], where: str, *params: object
) -> Work[list[MessageRecord]]:
    """The messages matching ``where``, each with its attachment sections, in two statements."""
    found = yield from messages(where, *params)
    rows = yield sql(
        "SELECT a.message_id, a.ciphertext_length, a.ciphertext_sha256"  # noqa: S608
        " FROM message_attachments a JOIN messages m ON m.message_id = a.message_id"
        f" WHERE {where} ORDER BY a.message_id, a.position",
        *params,
    )
    sections: dict[str, list[SealedAttachment]] = {}
    for message_id, length, digest in rows:
        sections.setdefault(message_id, []).append(SealedAttachment(digest, int(length)))
    return [
        replace(m, attachments=tuple(sections[m.message_id])) if m.message_id in sections else m
        for m in found
    ]


def _append_transition(
    message_id: str, state: State, at: datetime, reason: str | None, detail: str | None
) -> Work[None]:
    if state is State.REJECTED and not reason:
        raise StoreError(f"message {message_id}: a rejected transition needs a reason")
    yield sql(
        "UPDATE messages SET state = ?, updated_at = ? WHERE message_id = ?",
        state.value,
        at,
        message_id,
    )
    yield sql(
        "INSERT INTO transitions (message_id, state, at, reason, detail) VALUES (?, ?, ?, ?, ?)",
        message_id,
        state.value,
        at,
        reason,
        detail,
    )


def _apply_deadlines(changes: DeadlineChanges, at: datetime) -> Work[None]:
    """Open, close and reschedule; each is idempotent, so a redelivery may apply them again."""
    if changes.opened:
        yield sql(
            "INSERT INTO deadlines (deadline_id, message_id, correlation_id, kind, debtor,"  # noqa: S608
            " creditor, rag, started_at, due_at, next_at)"
            f" VALUES {_tuples(10, len(changes.opened))} ON CONFLICT (deadline_id) DO NOTHING",
            *(
                value
                for d in changes.opened
                for value in (
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
            ),
        )
    for closure in changes.closures:
        yield from _close(closure, at)
    for change in changes.reschedules:
        yield from _reschedule(change, at)


def _close(closure: Closure, at: datetime) -> Work[None]:
    where: list[str] = ["closed_at IS NULL"]
    params: list[object] = []
    for column, value in (
        ("message_id", closure.message_id),
        ("correlation_id", closure.correlation_id),
        ("debtor", closure.debtor),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if closure.kinds:
        where.append(f"kind IN ({', '.join('?' * len(closure.kinds))})")
        params.extend(sorted(k.value for k in closure.kinds))
    rows = yield sql(
        f"SELECT deadline_id, due_at < ? FROM deadlines WHERE {' AND '.join(where)}"  # noqa: S608
        "{for_update}",
        at,
        *params,
    )
    for deadline_id, late in rows:
        yield sql(
            "UPDATE deadlines SET closed_at = ?, closed_by = ?, next_at = NULL,"
            " breached = breached OR ? WHERE deadline_id = ?",
            at,
            closure.by,
            bool(late),
            deadline_id,
        )
        event = _closing_event(closure, bool(late))
        yield from _event(deadline_id, at, event, closure.by, closure.reason)


def _closing_event(closure: Closure, late: bool) -> DeadlineEvent:
    """What closing one deadline records: met, met late, or ended without being met."""
    if not closure.met:
        return DeadlineEvent.ENDED
    return DeadlineEvent.MET_LATE if late else DeadlineEvent.MET


def _reschedule(change: Reschedule, at: datetime) -> Work[None]:
    if (
        yield sql(
            "UPDATE deadlines SET rag = ?, due_at = ?, next_at = ?"
            " WHERE deadline_id = ? AND rag = ? AND closed_at IS NULL RETURNING 1",
            change.new_rag,
            change.due_at,
            change.next_at,
            change.deadline_id,
            change.old_rag,
        )
    ):
        yield from _event(change.deadline_id, at, DeadlineEvent.RERATED, None, change.reason)


def record_firings(firings: list[Firing]) -> Work[int]:
    """Record each escalation once: a repeat (same deadline and level) changes nothing.

    A batch is recorded in a few multi-row statements (events, deadlines,
    messages, transitions), not a handful per escalation: on PostgreSQL each
    statement is a round trip made while the batch's rows stay locked.
    """
    by_instant: dict[datetime, list[Firing]] = {}
    for firing in firings:  # one instant per escalator batch; grouped so each row keeps its own
        by_instant.setdefault(firing.plan.escalated_at, []).append(firing)
    recorded = 0
    for at, group in by_instant.items():
        for start in range(0, len(group), FIRINGS_PER_STATEMENT):
            recorded += yield from _record_firings(group[start : start + FIRINGS_PER_STATEMENT], at)
    return recorded


def _record_firings(firings: list[Firing], at: datetime) -> Work[int]:
    inserted = yield sql(
        "INSERT INTO deadline_events (deadline_id, at, event, level, message_id) VALUES "  # noqa: S608
        + ", ".join(["(?, ?, 'escalated', ?, ?)"] * len(firings))
        + " ON CONFLICT DO NOTHING RETURNING deadline_id",
        *(
            value
            for f in firings
            for value in (f.plan.deadline.deadline_id, at, f.plan.level, f.plan.message_id)
        ),
    )
    first_time = {row[0] for row in inserted}
    fresh = [f for f in firings if f.plan.deadline.deadline_id in first_time]
    schedules: dict[tuple[int, datetime | None], list[str]] = {}
    for f in fresh:
        schedules.setdefault((f.plan.level, f.plan.next_at), []).append(f.plan.deadline.deadline_id)
    for (level, next_at), ids in schedules.items():
        yield sql(
            "UPDATE deadlines SET level = ?, breached = TRUE,"  # noqa: S608
            " next_at = CASE WHEN closed_at IS NULL THEN CAST(? AS {instant}) END"
            f" WHERE deadline_id IN ({', '.join('?' * len(ids))})",
            level,
            next_at,
            *ids,
        )
    if not fresh:
        return 0
    new = yield from _insert_messages([f.record for f in fresh], at)
    routed = [f.plan for f in fresh if f.plan.message_id in new]
    if routed:
        yield sql(
            "UPDATE messages SET state = ?, updated_at = ?"  # noqa: S608
            f" WHERE message_id IN ({', '.join('?' * len(routed))})",
            State.ROUTED.value,
            at,
            *(plan.message_id for plan in routed),
        )
        yield sql(
            "INSERT INTO transitions (message_id, state, at, detail)"  # noqa: S608
            f" VALUES {_tuples(4, len(routed))}",
            *(
                value
                for plan in routed
                for value in (
                    plan.message_id,
                    State.ROUTED.value,
                    at,
                    f"level {plan.level} for {plan.deadline.deadline_id}",
                )
            ),
        )
    return len(fresh)


def _event(
    deadline_id: str,
    at: datetime,
    event: DeadlineEvent,
    message_id: str | None,
    reason: str | None,
) -> Work[None]:
    yield sql(
        "INSERT INTO deadline_events (deadline_id, at, event, message_id, reason)"
        " VALUES (?, ?, ?, ?, ?)",
        deadline_id,
        at,
        event.value,
        message_id,
        reason,
    )


def _tuples(width: int, count: int) -> str:
    """``count`` rows of ``width`` placeholders: one multi-row VALUES instead of many statements."""
    row = f"({', '.join('?' * width)})"
    return ", ".join([row] * count)
