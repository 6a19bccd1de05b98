"""The adapters' ledger: every write is on disk when it returns, also when many threads write
at once and share one commit (adapters/ledger.py)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.ledger import Ledger

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
WRITERS = 6
EACH = 10


def test_concurrent_writes_are_each_committed_before_they_return(tmp_path: Path) -> None:
    path = tmp_path / "adapters.db"
    ledger = Ledger(path)
    seen_by_another: list[str] = []

    def writer(n: int) -> None:
        other = sqlite3.connect(path)  # a second reader sees only what is committed
        try:
            for i in range(EACH):
                key = f"mesh:{n}-{i}"
                ledger.record("health", key, 0, "digest", "MESH", f"id-{n}-{i}", AT)
                row = other.execute("SELECT message_id FROM sent WHERE key = ?", (key,)).fetchone()
                seen_by_another.append(row[0] if row else f"missing {key}")
        finally:
            other.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.close()

    assert sorted(seen_by_another) == sorted(
        f"id-{n}-{i}" for n in range(WRITERS) for i in range(EACH)
    )
    reopened = Ledger(path)
    try:
        sent = reopened.sent("health", "mesh:3-7")
        assert sent is not None and sent.message_ids == ("id-3-7",)
    finally:
        reopened.close()


def test_a_refusal_and_a_repeated_record_keep_the_first(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "adapters.db")
    try:
        ledger.record("police", "k", 0, "d", "ppn.xml", "id-1", AT)
        ledger.record("police", "k", 0, "d", "ppn.xml", "id-2", AT)  # a retry: ignored
        ledger.record_refusal("police", "id-1", "policy: no agreement", AT)
        ledger.record_refusal("police", "id-1", "later reason", AT)
        sent = ledger.sent("police", "k")
        assert sent is not None and sent.message_ids == ("id-1",)
        assert ledger.refusals("police", "k") == {"id-1": "policy: no agreement"}
    finally:
        ledger.close()


def test_a_write_that_cannot_commit_raises_for_its_writer(tmp_path: Path) -> None:
    path = tmp_path / "adapters.db"
    ledger = Ledger(path)
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
    ledger._db.execute("PRAGMA busy_timeout = 0")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="ledger write not committed"):
            ledger.record("health", "k", 0, "d", "MESH", "id-1", AT)
        blocker.execute("ROLLBACK")
        ledger.record("health", "k", 0, "d", "MESH", "id-1", AT)  # the ledger still works
        sent = ledger.sent("health", "k")
        assert sent is not None and sent.message_ids == ("id-1",)
    finally:
        blocker.close()
        ledger.close()
