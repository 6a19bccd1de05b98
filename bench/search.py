"""`mash-gateway messages` on a store of 100,000 messages: keyset pages against OFFSET.

Run: `.venv/bin/python bench/search.py` (about a minute; `--quick` uses 20,000).
Fills a fresh SQLite store (WAL, synchronous=FULL, as the router's) in bulk,
then times each page through the store's own ``search_messages`` (the
command's query, recipients joined), first and deep, with and without
filters, beside the same page fetched with OFFSET. Prints the median of 20
runs of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.core.lifecycle import State
from gateway.core.message_search import MessageQuery, page_of, read_cursor
from gateway.store.sqlite import SqliteStore, to_text

AGENCIES = ("police", "csc", "health", "probation", "education", "housing")
TYPES = ("Referral", "InformationRequest", "InformationResponse", "Decision", "DeliveryReceipt")
STATES = ("routed", "delivered", "answered", "rejected")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUNS = 20


def fill(path: Path, count: int) -> None:
    conn = sqlite3.connect(path)
    rows, recipients = [], []
    for n in range(count):
        message_id = f"{n:08d}-0000-4000-8000-000000000000"
        sender = "hub" if n % 3 else AGENCIES[n % len(AGENCIES)]
        at = to_text(T0 + timedelta(seconds=n * 30))
        rows.append(
            (
                message_id,
                f"CASE-{n // 8}",
                None,
                TYPES[n % len(TYPES)],
                sender,
                None,
                None,
                at,
                STATES[n % len(STATES)],
                at,
            )
        )
        to = AGENCIES[(n + 1) % len(AGENCIES)] if sender == "hub" else "hub"
        recipients.append((message_id, 0, to))
    with conn:
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO message_recipients VALUES (?, ?, ?)", recipients)
    conn.execute("ANALYZE")
    conn.close()


async def timed(store: SqliteStore, query: MessageQuery) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        await store.search_messages(query)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def offset_page(path: Path, offset: int) -> float:
    conn = sqlite3.connect(path)
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        conn.execute(
            "SELECT m.*, r.agency FROM messages m LEFT JOIN message_recipients r"
            " ON r.message_id = m.message_id WHERE m.message_id IN (SELECT message_id FROM"
            " messages ORDER BY created_at DESC, message_id DESC LIMIT 51 OFFSET ?)",
            (offset,),
        ).fetchall()
        samples.append((time.perf_counter() - start) * 1000)
    conn.close()
    return statistics.median(samples)


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tracking.db"
        store = SqliteStore(str(path))
        await store.open()  # the schema and its indexes, as migrations make them
        fill(path, count)
        deep = count // 2
        first = page_of(await store.search_messages(MessageQuery(limit=deep)), deep)
        assert first.next is not None
        after = read_cursor(first.next)
        cases = [
            ("first page, no filter", MessageQuery()),
            (f"page after {deep:,} rows (keyset)", MessageQuery(after=after)),
            ("first page, --agency health", MessageQuery(agency="health")),
            (
                "first page, --type Decision --state delivered",
                MessageQuery(message_type="Decision", state=State.DELIVERED),
            ),
            ("first page, --case", MessageQuery(correlation_id=f"CASE-{count // 16}")),
            (f"--agency health after {deep:,} rows", MessageQuery(agency="health", after=after)),
        ]
        print(f"{count:,} messages in SQLite; median of {RUNS} runs, 50 per page")
        for name, query in cases:
            print(f"{name:<50} {await timed(store, query):8.2f} ms")
        print(
            f"{f'page after {deep:,} rows (OFFSET, for comparison)':<50} "
            f"{offset_page(path, deep):8.2f} ms"
        )
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 messages")
    asyncio.run(main(20_000 if parser.parse_args().quick else 100_000))
