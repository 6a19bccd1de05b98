"""What each adapter has already sent, by key, durable across restarts (``state/adapters.db``).

A key is a file's content digest (a file dropped twice is recognised) or an
HTTP Idempotency-Key (a repeated request returns the same message ids and
sends nothing new). Each document of a multi-document input (CSV rows) is
recorded as soon as it is published, so a restart after a crash resumes
after the last published document instead of sending the file again. The
window left is a crash between the broker's confirm and this record.

Its own small SQLite file, not the tracking store: it holds input digests
and keys, which are adapter business, never payloads.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

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
)
"""


@dataclass(frozen=True)
class Sent:
    digest: str
    source: str
    message_ids: tuple[str, ...]


class Ledger:
    """A thread-safe handle on the ledger file; writes are committed before they return."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()

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
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?, ?)",
                (agency, key, index, digest, source, message_id, at.isoformat()),
            )
