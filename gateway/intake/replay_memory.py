"""The intake's memory of the mail it accepted, for the replay window: its own SQLite file.

Why its own file (``[intake] replay_store``, by default
``state/intake-replay.db`` in the area) and not a table in the tracking
store: the memory is the intake's alone (no other process reads it, no
report joins it), one intake serves an area, and it must not wait on the
tracking store's schema, which is being merged into one implementation for
SQLite and PostgreSQL. A second intake host would need the memory shared;
moving it into the tracking store is then one table and these three calls.

What it holds: a digest per key (replay.py) and the exchange message the
mail was accepted as, with the time; nothing of the mail itself. The file
is created 0600. As in the tracking store, sqlite3 runs on one dedicated
thread, in WAL mode with ``synchronous=FULL``: a key is on disk before the
sender hears 250, so a crash right after cannot forget it. Rows older than
the window are deleted as new ones are written.

Group commit: the mails accepted while a write is on disk are written
together in the next transaction, one fsync for all of them, and each
``remember`` returns only once the transaction holding its keys committed.
One fsync per mail (1-5 ms on the build machine's disk, on one thread) made
the memory a queue every accepted mail waited in; no write waits for
company, so a lone mail is written at once, as before.

A mail is claimed while it is being accepted (in memory, so two copies
arriving at once cannot both pass) and remembered only once accepted; a
refused mail leaves nothing behind, and a crash between the exchange's
confirmation and the write forgets that one mail, never a mail not yet sent.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from gateway.intake.replay import KeyKind, ReplayKey, Seen

T = TypeVar("T")
Row = tuple[str, str, str, str]  # kind, digest, message_id, accepted_at (_text)
Waiting = tuple[list[Row], "asyncio.Future[None]"]  # a mail's rows, and its remember() waiting

BUSY_TIMEOUT_MS = 5000
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS accepted ("
    " kind TEXT NOT NULL, digest TEXT NOT NULL, message_id TEXT NOT NULL,"
    " accepted_at TEXT NOT NULL, PRIMARY KEY (kind, digest)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS accepted_by_time ON accepted (accepted_at)",
)


def _text(at: datetime) -> str:
    """Fixed-width UTC text, so text order is time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _rows(batch: list[Waiting]) -> list[Row]:
    return [row for rows, _ in batch for row in rows]


def _settle(batch: list[Waiting], error: BaseException | None) -> None:
    """Tell each waiting remember() how its commit went (one it gave up on is skipped)."""
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        elif isinstance(error, Exception):
            done.set_exception(error)
        else:  # the committer itself was cancelled (the loop is stopping)
            done.cancel()


class ReplayMemory:
    def __init__(self, path: Path, window: timedelta) -> None:
        self.path = path
        self.window = window
        self._in_flight: set[ReplayKey] = set()
        self._waiting: list[Waiting] = []  # for the next commit
        self._committer: asyncio.Task[None] | None = None  # writing; remember() adds to it
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-replay")
        await self._run(self._connect)

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._committer is not None:  # the accepted mails' keys go to disk first
            await self._committer
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def claim(self, keys: tuple[ReplayKey, ...], now: datetime) -> Seen | None:
        """What was seen before under one of ``keys``; None, and the keys are claimed for
        this mail until ``release``, when none was."""
        busy = next((key for key in keys if key in self._in_flight), None)
        if busy is not None:
            return Seen(busy.kind, None, None)
        self._in_flight.update(keys)
        try:
            seen = await self._run(lambda: self._seen(keys, now - self.window))
        except BaseException:
            self.release(keys)
            raise
        if seen is not None:
            self.release(keys)
        return seen

    async def remember(self, keys: tuple[ReplayKey, ...], message_id: str, now: datetime) -> None:
        """Keep ``keys`` for the window: the mail was accepted as ``message_id``. Returns once
        they are on disk, in a transaction shared with the mails accepted meanwhile."""
        rows = [(key.kind.value, key.digest, message_id, _text(now)) for key in keys]
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if self._committer is None:
            self._committer = asyncio.get_running_loop().create_task(self._commit_waiting())
        await done

    async def _commit_waiting(self) -> None:
        """Write what waits, one transaction at a time, until nothing does."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._run(functools.partial(self._remember, _rows(batch)))
                except BaseException as exc:
                    _settle(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    _settle(batch, None)
        finally:
            self._committer = None

    def release(self, keys: tuple[ReplayKey, ...]) -> None:
        self._in_flight.difference_update(keys)

    async def _run(self, work: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError("the replay memory is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for statement in SCHEMA:
            conn.execute(statement)
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the replay memory is not open")
        return self._conn

    def _seen(self, keys: tuple[ReplayKey, ...], since: datetime) -> Seen | None:
        for key in keys:
            row = (
                self._db()
                .execute(
                    "SELECT message_id, accepted_at FROM accepted"
                    " WHERE kind = ? AND digest = ? AND accepted_at >= ?",
                    (key.kind.value, key.digest, _text(since)),
                )
                .fetchone()
            )
            if row is not None:
                return Seen(KeyKind(key.kind), str(row[0]), _time(str(row[1])))
        return None

    def _remember(self, rows: list[Row]) -> None:
        """One transaction: the batch's rows, and the rows past the window (counted from the
        batch's latest acceptance) deleted."""
        db = self._db()
        latest = max(row[3] for row in rows)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO accepted (kind, digest, message_id, accepted_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (kind, digest) DO UPDATE SET"
                " message_id = excluded.message_id, accepted_at = excluded.accepted_at",
                rows,
            )
            expired = _text(_time(latest) - self.window)
            db.execute("DELETE FROM accepted WHERE accepted_at < ?", (expired,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
