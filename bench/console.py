"""Console benchmark: each page's load time with 100,000 messages in the store.

Run: .venv/bin/python bench/console.py [--quick]

A fresh area (`mash-gateway init`) on the embedded SQLite store is loaded
with 10,000 cases of 10 messages each (a referral, four requests, four
responses, a decision; 100,000 messages, 200,000 transitions), created over
the last 90 days, and the four requests' response deadlines (40,000): most
met, one in twenty met late after escalating, the last days' still open,
some of them overdue; and 1,000 messages held in quarantine (a
tenth with ``--quick``). Rows go straight into the tables, as the router
would leave them: routing 100,000 messages first would only measure
routing. ``--quick`` loads a tenth; ``--store postgres`` runs it on the
local PostgreSQL (a fresh schema, dropped afterwards) instead of SQLite.

The console then runs in this process (no broker poll) and a signed-in
client fetches each page ``ROUNDS`` times over real HTTP: it prints p50,
p95 and the slowest per page, beside the ceiling measured in the same run:
the console's own stylesheet, a static file through the same middlewares
(session, headers), which is what any page costs before it reads the
store. Target: every page under 200 ms (p95).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg  # type: ignore[import-untyped]

from bench.deadlines import pg_schema
from bench.e2e import percentile
from gateway.cli import main as cli_main
from gateway.config.area_config import load_config
from gateway.console.accounts import Accounts, Role, users_path
from gateway.console.server import serving
from gateway.core.quarantine import Cause, Entry, Facts
from gateway.infra.clock import utc_now
from gateway.store import store_from_url
from gateway.store.sqlite import to_text

ROUNDS = 50
TARGET_MS = 200.0
PARTNERS = ("health", "csc", "probation", "housing")
PASSWORD = "bench-password-long-enough"


@dataclass
class Rows:
    messages: list[tuple[object, ...]] = field(default_factory=list)
    recipients: list[tuple[object, ...]] = field(default_factory=list)
    transitions: list[tuple[object, ...]] = field(default_factory=list)
    deadlines: list[tuple[object, ...]] = field(default_factory=list)
    events: list[tuple[object, ...]] = field(default_factory=list)


COLUMNS = {
    "messages": ("message_id", "correlation_id", "in_reply_to", "message_type", "sender",
                 "created_at", "state", "updated_at"),
    "message_recipients": ("message_id", "position", "agency"),
    "transitions": ("message_id", "state", "at", "reason"),
    "deadlines": ("deadline_id", "message_id", "correlation_id", "kind", "debtor", "creditor",
                  "rag", "started_at", "due_at", "level", "closed_at", "closed_by", "breached"),
    "deadline_events": ("deadline_id", "at", "event", "level"),
}  # fmt: skip


def build(cases: int, now: datetime) -> Rows:
    """``cases`` cases of 10 messages, and the four requests' response deadlines of each."""
    rows = Rows()
    span = timedelta(days=90)
    for n in range(cases):
        case = f"MASH-BENCH-{n:06d}"
        start = now - span * (1 - n / cases)
        at = start

        def add(kind: str, sender: str, to: str, reply: str | None = None, case: str = case) -> str:
            nonlocal at
            at += timedelta(minutes=7)
            message_id = str(uuid.uuid4())
            rows.messages.append((message_id, case, reply, kind, sender, at, "delivered", at))
            rows.recipients.append((message_id, 0, to))
            rows.transitions.append((message_id, "submitted", at, None))
            rows.transitions.append((message_id, "delivered", at, None))
            return message_id

        add("Referral", "police", "hub")
        open_case = now - start < timedelta(days=2)
        for i, partner in enumerate(PARTNERS):
            request = add("InformationRequest", "hub", partner)
            due = at + timedelta(hours=24)
            late = n % 20 == i
            closed = None if open_case and n % 3 else due + timedelta(hours=6 if late else -6)
            if closed is not None:
                add("InformationResponse", partner, "hub", request)
            deadline_id = f"{request}/response/{partner}"
            rows.deadlines.append(
                (deadline_id, request, case, "response", partner, "hub", "Amber", at, due,
                 2 if late else 0, closed, "response" if closed else None, late)
            )  # fmt: skip
            if late:
                rows.events.append((deadline_id, due, "escalated", 1))
                rows.events.append((deadline_id, due + timedelta(hours=4), "escalated", 2))
        add("Decision", "hub", "police")
    return rows


def tables(rows: Rows) -> dict[str, list[tuple[object, ...]]]:
    return {
        "messages": rows.messages,
        "message_recipients": rows.recipients,
        "transitions": rows.transitions,
        "deadlines": rows.deadlines,
        "deadline_events": rows.events,
    }


def load_sqlite(path: Path, rows: Rows) -> None:
    def text(value: object) -> object:
        if isinstance(value, datetime):
            return to_text(value)
        return int(value) if isinstance(value, bool) else value

    with sqlite3.connect(path) as db:
        for table, records in tables(rows).items():
            columns = COLUMNS[table]
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                [tuple(text(v) for v in record) for record in records],
            )
        db.execute("ANALYZE")


async def load_postgres(url: str, rows: Rows) -> None:
    base, _, schema = url.partition("?search_path=")
    db = await asyncpg.connect(base, server_settings={"search_path": schema})
    try:
        for table, records in tables(rows).items():
            await db.copy_records_to_table(table, records=records, columns=list(COLUMNS[table]))
        await db.execute("ANALYZE")
    finally:
        await db.close()


async def quarantine(store_url: str, count: int, now: datetime) -> str:
    """``count`` Referrals held in quarantine for want of an agreement; one entry's id.

    Through the store's own ``keep_quarantined``, as the keeper takes them in:
    each with a 4 KB random body standing in for the sealed envelope.
    """
    store = store_from_url(store_url)
    await store.open()
    try:
        for n in range(count):
            body = os.urandom(4096)
            entry = Entry(
                entry_id=f"q{n:011d}",
                facts=Facts(str(uuid.uuid4()), f"MASH-BENCH-Q{n:06d}", "Referral", "police",
                            ("education",), now),
                cause=Cause("policy", "no agreement lets police send Referral to education",
                            "router"),
                quarantined_at=now - timedelta(minutes=count - n),
                size=len(body),
                body_sha256=hashlib.sha256(body).hexdigest(),
            )  # fmt: skip
            assert await store.keep_quarantined(entry, body)
    finally:
        await store.close()
    return f"q{count // 2:011d}"


async def measure(config_path: Path, case: str, held: str) -> dict[str, list[float]]:
    config = load_config(str(config_path))
    Accounts(users_path(config)).add("bench", Role.OPERATOR, PASSWORD)
    pages = {
        "stylesheet (ceiling)": "/static/console.css",
        "overview": "/",
        "deadlines": "/deadlines",
        "case (10 messages)": f"/case?id={case}",
        "quarantine (held)": "/quarantine",
        "quarantine entry": f"/quarantine/entry?id={held}",
        "keys and agreements": "/keys",
    }
    timings: dict[str, list[float]] = {name: [] for name in pages}
    async with serving(config, port=0, poll_broker=False) as listening:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(listening.url + "sign-in") as response:
                text = await response.text()
            csrf = text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            form = {"name": "bench", "password": PASSWORD, "csrf": csrf}
            async with http.post(listening.url + "sign-in", data=form) as response:
                assert response.status == 200, response.status
            async with http.get(listening.url + "deadlines") as response:
                page = await response.text()
            if "after=" in page:
                after = page.split('href="/deadlines?after=', 1)[1].split('"', 1)[0]
                pages["deadlines, next page"] = f"/deadlines?after={after.replace('&amp;', '&')}"
                timings["deadlines, next page"] = []
            for _ in range(ROUNDS):
                for name, path in pages.items():
                    started = time.perf_counter()
                    async with http.get(listening.url + path.lstrip("/")) as response:
                        await response.read()
                        assert response.status == 200, (path, response.status)
                    timings[name].append((time.perf_counter() - started) * 1000)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 messages instead of 100,000")
    parser.add_argument(
        "--store", choices=("sqlite", "postgres"), default="sqlite", help="(default sqlite)"
    )
    args = parser.parse_args()
    cases = 1_000 if args.quick else 10_000
    dropped = None
    with tempfile.TemporaryDirectory(prefix="mash-bench-") as tmp:
        area = Path(tmp, "area")
        assert cli_main(["init", str(area), "--broker-url", "amqp://127.0.0.1/unused"]) == 0
        config_path = area / "gateway.toml"
        if args.store == "postgres":
            url, dropped = asyncio.run(pg_schema())
            sqlite_line = 'url = "sqlite:///state/gateway.db"'
            text = config_path.read_text()
            assert sqlite_line in text, "init no longer writes the store's URL this way"
            config_path.write_text(text.replace(sqlite_line, f'url = "{url}"'))
        config = load_config(str(config_path))
        try:
            asyncio.run(_migrate(store_from_url(config.store_url)))
            started = time.perf_counter()
            rows = build(cases, utc_now())
            if args.store == "postgres":
                asyncio.run(load_postgres(config.store_url, rows))
            else:
                load_sqlite(Path(config.store_url.removeprefix("sqlite:///")), rows)
            print(
                f"{args.store}: loaded {len(rows.messages)} messages, {len(rows.transitions)}"
                f" transitions, {len(rows.deadlines)} deadlines, {len(rows.events)} escalations"
                f" in {time.perf_counter() - started:.1f} s"
            )
            held = asyncio.run(quarantine(config.store_url, cases // 10, utc_now()))
            print(f"{args.store}: {cases // 10} messages held in quarantine")
            case = f"MASH-BENCH-{cases // 2:06d}"
            timings = asyncio.run(measure(config_path, case, held))
        finally:
            if dropped is not None:
                asyncio.run(dropped())
    print(
        f"\n{'page':<24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  (target p95 < {TARGET_MS:.0f})"
    )
    worst = 0.0
    for name, unsorted in timings.items():
        samples = sorted(unsorted)
        p95 = percentile(samples, 95)
        worst = max(worst, p95)
        print(f"{name:<24} {percentile(samples, 50):8.1f} {p95:8.1f} {max(samples):8.1f}")
    print(f"\nslowest page p95: {worst:.1f} ms: {'met' if worst < TARGET_MS else 'MISSED'}")
    return 0 if worst < TARGET_MS else 1


async def _migrate(store: object) -> None:
    await store.open()  # type: ignore[attr-defined]
    await store.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
