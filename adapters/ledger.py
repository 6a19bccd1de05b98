"""What each adapter has already sent, by key, durable across restarts (``state/adapters.db``).

A key is a file's content digest (a file dropped twice is recognised) or an
HTTP Idempotency-Key (a repeated request returns the same message ids and
sends nothing new). Each document of a multi-document input (CSV rows) is
recorded as soon as it is published, so a restart after a crash resumes
after the last published document instead of sending the file again. The
window left is a crash between the broker's confirm and this record.

It also keeps which of those messages the exchange refused (a NonDelivery
came back), so a transport that files its inputs away can file a refused
one under error/ whichever comes first: the NonDelivery or the filing.

Its own small SQLite file, not the tracking store: it holds input digests,
keys and refusal reasons (checks and ids), which are adapter business, never
payloads.

Every write is committed (``synchronous=FULL``: on disk) before it returns.
Writes that arrive while another commits wait for it and then share one
transaction, so one fsync covers them all (a group commit): the adapters'
transports record from several threads at once, and one commit at a time
would make the ledger's fsync every message's turnstile.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    agency TEXT NOT NULL,
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (agency, key, idx)
);
CREATE INDEX IF NOT EXISTS sent_by_message ON sent (agency, message_id);
CREATE TABLE IF NOT EXISTS refused (
    agency TEXT NOT NULL,
    message_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (agency, message_id)
)
"""


@dataclass(frozen=True)
class Sent:
    digest: str
    source: str
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class SentAs:
    """Where one message came from: the key it was sent under and the input's source."""

    key: str
    source: str


class _Write:
    """One statement waiting for a commit, and what became of it."""

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        self.sql, self.params = sql, params
        self.done = False
        self.error: sqlite3.Error | None = None


class Ledger:
    """A thread-safe handle on the ledger file; writes are committed before they return."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()  # the connection
        self._queue_lock = threading.Lock()  # the writes waiting for a commit
        self._queued: list[_Write] = []

    def close(self) -> None:
        self._db.close()

    def sent(self, agency: str, key: str) -> Sent | None:
        with self._lock:
            rows = self._db.execute(
                "SELECT digest, source, message_id FROM sent WHERE agency = ? AND key = ? "
                "ORDER BY idx",
                (agency, key),
            ).fetchall()
        if not rows:
            return None
        return Sent(rows[0][0], rows[0][1], tuple(r[2] for r in rows))

    def record(
        self,
        agency: str,
        key: str,
        index: int,
        digest: str,
        source: str,
        message_id: str,
        at: datetime,
    ) -> None:
        self._write(
            "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?, ?)",
            (agency, key, index, digest, source, message_id, at.isoformat()),
        )

    def sent_as(self, agency: str, message_id: str) -> SentAs | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, source FROM sent WHERE agency = ? AND message_id = ?",
                (agency, message_id),
            ).fetchone()
        return SentAs(row[0], row[1]) if row else None

    def record_refusal(self, agency: str, message_id: str, reason: str, at: datetime) -> None:
        """The exchange refused ``message_id``; the first reason recorded is kept."""
        self._write(
            "INSERT OR IGNORE INTO refused VALUES (?, ?, ?, ?)",
            (agency, message_id, reason, at.isoformat()),
        )

    def refusals(self, agency: str, key: str) -> dict[str, str]:
        """The reason for each message sent under ``key`` that the exchange refused, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.message_id, r.reason FROM sent s JOIN refused r "
                "ON r.agency = s.agency AND r.message_id = s.message_id "
                "WHERE s.agency = ? AND s.key = ? ORDER BY s.idx",
                (agency, key),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run ``sql`` in a committed transaction: the first writer to hold the connection
        commits every write queued by then, its own and those of the threads waiting."""
        write = _Write(sql, params)
        with self._queue_lock:
            self._queued.append(write)
        with self._lock:
            if not write.done:
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._commit(batch)
        if write.error is not None:
            raise sqlite3.DatabaseError(
                f"ledger write not committed: {write.error}"
            ) from write.error

    def _commit(self, batch: list[_Write]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for write in batch:
                self._db.execute(write.sql, write.params)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            for write in batch:
                write.error = exc
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            for write in batch:
                write.done = True
