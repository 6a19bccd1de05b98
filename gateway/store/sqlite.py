"""The embedded tracking store: one SQLite file, zero set-up.

Why these settings:
- The stdlib ``sqlite3`` runs on one dedicated worker thread, so the event
  loop never blocks on disk and the connection never crosses threads; no
  extra dependency is needed. Each unit of work runs whole on that thread,
  one at a time, so one hop per transaction and none can interleave.
- WAL lets ``mash-gateway track`` read while the router writes.
- ``synchronous=FULL``: the router acks a broker message only after its state
  change is durable. Under WAL, NORMAL may lose the last commits on power
  loss, which would forget a claim (re-opening a replay window) or a routed
  state (making the later receipt illegal). FULL fsyncs each commit.
- Group commit: the units of work of concurrent callers (the router's
  messages in flight, an edge's concurrent hand-overs) that arrive while one
  commit is on its way to disk go into the next transaction together, each
  under a savepoint of its own, so one commit (one fsync) serves them all.
  Each unit still runs whole before the next (serial, as before), a unit
  that fails rolls back to its savepoint alone, and every caller returns
  only once the commit that holds its work is durable.
- ``busy_timeout`` lets a second process (the CLI, a second router) wait for
  the write lock instead of failing at once; writes take it up front with
  ``BEGIN IMMEDIATE`` so a read-then-write never deadlocks.
- Timestamps are stored as fixed-width UTC ISO-8601 text (``...000000Z``),
  so text order is time order.
- There are no row locks: one router per file, so ``fire_due`` selects, fires
  outside any transaction (never holding the write lock over a publish),
  then records. A crash between firing and recording fires again at start-up
  with the same escalation ids, which recipients' edges hand over once.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from gateway.core.records import Fire
from gateway.store import StoreError
from gateway.store.dialect import Dialect, T, Work, aware
from gateway.store.sql_store import Due, SqlStore, record_firings

BUSY_TIMEOUT_MS = 5000
OLDEST_SQLITE = (3, 35, 0)  # RETURNING; ON CONFLICT DO NOTHING and FILTER are older
_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_text(at: datetime) -> str:
    return aware(at).astimezone(UTC).strftime(_FORMAT)


def from_text(text: str) -> datetime:
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)


SQLITE = Dialect(
    instant="TEXT",
    sequence_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    flag="INTEGER NOT NULL DEFAULT 0",
    blob="BLOB",
    row_locks=False,
    migration_lock=None,  # BEGIN IMMEDIATE already holds the one write lock
)


@dataclass
class _Unit:
    """A unit of work waiting for the next group commit, and the caller waiting on it."""

    what: str
    work: Work[Any]
    done: asyncio.Future[Any]
    outcome: tuple[bool, Any] = (False, None)  # (ran, its result or exception)


class SqliteStore(SqlStore):
    """A TrackingStore in the SQLite file at ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__(SQLITE, path, from_text)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._claimed: set[str] = set()  # deadlines a batch is firing now (``_fire``)
        self._claiming = asyncio.Lock()
        self._pending: list[_Unit] = []  # units of work for the next group commit
        self._committer: asyncio.Task[None] | None = None

    async def _connect(self) -> bool:
        if self._executor is not None:
            return False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._prepare)
        return True

    async def close(self) -> None:
        if self._committer is not None:  # what is queued is committed first
            await asyncio.wait([self._committer])
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    def _prepare(self) -> None:
        if sqlite3.sqlite_version_info < OLDEST_SQLITE:
            raise StoreError(
                f"tracking store {self.path} needs SQLite {'.'.join(map(str, OLDEST_SQLITE))}"
                f" or newer; this Python has {sqlite3.sqlite_version}"
            )
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
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare tracking store {self.path}: {exc}") from exc

    async def _transaction(self, what: str, work: Work[T]) -> T:
        """Run ``work`` in the next group commit; return once that commit is durable."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Unit(what, work, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        return await done

    async def _commit_pending(self) -> None:
        """Commit what is queued, batch after batch; each caller learns its own outcome."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._run("committing", functools.partial(_commit_all, batch=batch))
            except BaseException as exc:  # the commit failed: no unit of the batch is durable
                cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
                for unit in batch:
                    if not unit.done.done():
                        unit.done.set_exception(self._failed(unit.what, cause))
                if not isinstance(exc, Exception):
                    raise
                continue
            for unit in batch:
                ran, value = unit.outcome
                if unit.done.done():
                    continue
                if ran:
                    unit.done.set_result(value)
                else:
                    unit.done.set_exception(self._failed(unit.what, value))

    def _failed(self, what: str, exc: BaseException) -> BaseException:
        """A unit's own error, named as a transaction of its own would have named it."""
        if not isinstance(exc, sqlite3.Error):
            return exc
        error = StoreError(f"tracking store {self.path}: {what} failed: {exc}")
        error.__cause__ = exc
        return error

    async def _query(self, what: str, work: Work[T]) -> T:
        return await self._run(what, lambda conn: _drive(conn, work))

    async def _fire(self, due: Due, limit: int, fire: Fire) -> int:
        """Claim due rows no other batch of this process holds, fire them, record, release.

        One process owns a SQLite store, so an in-memory claim does what SKIP
        LOCKED does on PostgreSQL: batches fired at once never share a deadline.
        """
        held = self._claimed
        async with self._claiming:  # a batch reads after the one before it has claimed
            found = await self._query("reading due deadlines", due(limit + len(held)))
            claimed = [d for d in found if d.deadline_id not in held][:limit]
            ids = {d.deadline_id for d in claimed}
            held |= ids
        if not claimed:
            return 0
        try:
            firings = await fire(claimed)
            return await self._transaction("recording escalations", record_firings(firings))
        finally:
            held -= ids

    async def _run(self, what: str, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on the worker thread, the only one that touches the connection."""

        def run() -> T:
            if self._conn is None:
                raise StoreError(f"tracking store {self.path} is not open")
            try:
                return job(self._conn)
            except sqlite3.Error as exc:
                raise StoreError(f"tracking store {self.path}: {what} failed: {exc}") from exc

        if self._executor is None:
            raise StoreError(f"tracking store {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, run)


def _commit_all(conn: sqlite3.Connection, batch: list[_Unit]) -> None:
    """One write transaction for the batch, each unit under a savepoint of its own.

    A unit that fails is rolled back alone and keeps its exception; if SQLite
    rolled back the whole transaction (it does on some I/O errors), the batch
    fails as one.
    """
    conn.execute("BEGIN IMMEDIATE")  # the write lock up front
    try:
        for unit in batch:
            conn.execute("SAVEPOINT unit")
            try:
                unit.outcome = (True, _drive(conn, unit.work))
            except Exception as exc:
                if not conn.in_transaction:
                    raise
                conn.execute("ROLLBACK TO unit")
                unit.outcome = (False, exc)
            conn.execute("RELEASE unit")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _drive(conn: sqlite3.Connection, work: Work[T]) -> T:
    """Run ``work`` to its end, each statement on ``conn``."""
    try:
        statement = next(work)
        while True:
            params = [to_text(p) if isinstance(p, datetime) else p for p in statement.params]
            statement = work.send(conn.execute(SQLITE.render(statement.sql), params).fetchall())
    except StopIteration as done:
        return cast(T, done.value)
