"""Deadline benchmark: 100,000 open deadlines, 10,000 falling due at once.

Run: .venv/bin/python bench/deadlines.py [--quick] [--only 1,2,3] [--profile FILE]

On the local RabbitMQ and PostgreSQL, each scenario in a fresh vhost (and
schema) deleted afterwards, it prints:
- idle: with 100,000 open deadlines and none due, the CPU the router
  process uses (with its children: the sealing worker; and on PostgreSQL
  the server's), as % of one core, over 15 s. Target: under 5%;
- burst: 10,000 of them fall due at the same instant. Escalation lag is
  the time from the due instant to the escalation event arriving on
  ``mash.events`` at this process (p50, p99; target p99 <= 5 s), with the
  CPU the router and store used for the burst;
- duplicates: escalation events received minus distinct escalations (must
  be 0);
- the ceiling, measured in the same run: bare aio-pika publishing the same
  messages the burst publishes (two confirmed inbox copies and one
  unconfirmed event per escalation, persistent, a batch of 500 in flight)
  to the same queues.
  The escalator must also seal each escalation, so its lag cannot be
  below this; the last column is p99 / ceiling (target <= 1.5x).

Scenarios: one router on SQLite (the default store), one router on
PostgreSQL, two routers on one PostgreSQL store. ``--quick`` uses 10,000
open and 1,000 due.

Deadlines are loaded straight into the store's tables (one message row per
deadline, as the router would leave them), because routing 100,000
messages first would only measure routing. The silent agency is the
police and the waiting agency the hub, so each level-1 escalation goes to
both inboxes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
import asyncpg  # type: ignore[import-untyped]
from aio_pika.abc import DeliveryMode

from bench.e2e import Child, cpu_seconds, fresh_vhost, percentile, spawn
from gateway.broker import topology
from gateway.cli import main as cli_main
from gateway.infra.clock import utc_now
from gateway.services.escalator import DEFAULT_BATCH
from gateway.store import store_from_url
from gateway.store.sqlite import to_text

PG_URL = os.environ.get("MASH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SILENT, WAITING = "police", "hub"
IDLE_WINDOW_S = 15.0
LEAD_S = 25.0  # from the end of loading to the burst: start-up plus the idle window
# Only level 1 fires during the run: the grace to level 2 is a day.
BENCH_DEADLINES = '\n[deadlines]\ngrace = { duration = "1d", counting = "clock" }\n'
# The router under cProfile timed by its main thread's CPU, not the wall clock: on a
# loaded machine a wall-clock profile charges other processes' time to whatever was running.
PROFILED = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
profiler = cProfile.Profile(time.thread_time)
try:
    profiler.runcall(runpy.run_module, "gateway", run_name="__main__", alter_sys=True)
finally:
    profiler.dump_stats(out)
"""


@dataclass(frozen=True)
class Scenario:
    label: str
    store: str  # "sqlite" or "postgres"
    routers: int


SCENARIOS = (
    Scenario("1 router, SQLite", "sqlite", 1),
    Scenario("1 router, PostgreSQL", "postgres", 1),
    Scenario("2 routers, PostgreSQL", "postgres", 2),
)


def total_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes; one that has exited (a PostgreSQL backend) counts 0."""
    total = 0.0
    for pid in pids:
        with suppress(FileNotFoundError):
            total += cpu_seconds(pid)
    return total


def with_children(pids: list[int]) -> list[int]:
    """The processes and their descendants: a router's sealing worker is part of its cost."""
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        with suppress(FileNotFoundError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("postgres"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def rows(n_open: int) -> list[tuple[str, str, str]]:
    """(message id, case, deadline id) for every deadline."""
    made = []
    for n in range(n_open):
        message_id = str(uuid.uuid4())
        made.append((message_id, f"CASE-{n}", f"{message_id}/delivery/{SILENT}"))
    return made


def load_sqlite(path: Path, loaded: list[tuple[str, str, str]], start: datetime) -> None:
    """Every deadline due in 30 days; ``move_burst`` brings some forward."""
    far = to_text(start + timedelta(days=30))
    with sqlite3.connect(path) as db:
        stamp = to_text(start)
        db.executemany(
            "INSERT INTO messages (message_id, correlation_id, message_type, sender, created_at,"
            " state, updated_at) VALUES (?, ?, 'Referral', ?, ?, 'routed', ?)",
            [(m, c, WAITING, stamp, stamp) for m, c, _ in loaded],
        )
        db.executemany(
            "INSERT INTO deadlines (deadline_id, message_id, correlation_id, kind, debtor,"
            " creditor, started_at, due_at, next_at) VALUES (?, ?, ?, 'delivery', ?, ?, ?, ?, ?)",
            [(d, m, c, SILENT, WAITING, stamp, far, far) for m, c, d in loaded],
        )


async def load_postgres(url: str, loaded: list[tuple[str, str, str]], start: datetime) -> None:
    far = start + timedelta(days=30)
    db = await asyncpg.connect(url)
    try:
        await db.copy_records_to_table(
            "messages",
            records=[(m, c, "Referral", WAITING, start, "routed", start) for m, c, _ in loaded],
            columns=[
                "message_id",
                "correlation_id",
                "message_type",
                "sender",
                "created_at",
                "state",
                "updated_at",
            ],
        )
        await db.copy_records_to_table(
            "deadlines",
            records=[(d, m, c, "delivery", SILENT, WAITING, start, far, far) for m, c, d in loaded],
            columns=[
                "deadline_id", "message_id", "correlation_id", "kind", "debtor", "creditor",
                "started_at", "due_at", "next_at",
            ],
        )  # fmt: skip
        await db.execute("ANALYZE deadlines")
    finally:
        await db.close()


async def pg_schema() -> tuple[str, Callable[[], Awaitable[None]]]:
    schema = f"mash_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {schema}")
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()

    return f"{PG_URL}?search_path={schema}", drop


async def ceiling(url: str, escalations: int) -> float:
    """Seconds for bare aio-pika to publish what the burst publishes, as the escalator does:
    two inbox copies per escalation confirmed, a batch at a time, and an unconfirmed event."""
    body = os.urandom(3000)  # about a sealed two-recipient Escalation
    event = os.urandom(600)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        deliver = await channel.get_exchange(topology.DELIVER_EXCHANGE)
        announce = await connection.channel(publisher_confirms=False)
        events = await announce.get_exchange(topology.EVENTS_EXCHANGE)
        gate = asyncio.Semaphore(DEFAULT_BATCH)

        async def copy(n: int, agency: str) -> None:
            message = aio_pika.Message(
                body, delivery_mode=DeliveryMode.PERSISTENT, message_id=str(n)
            )
            await deliver.publish(message, routing_key=agency, mandatory=True)

        async def one(n: int) -> None:
            async with gate:
                await asyncio.gather(copy(n, SILENT), copy(n, WAITING))
                await events.publish(
                    aio_pika.Message(event, delivery_mode=DeliveryMode.PERSISTENT),
                    routing_key="bench.ceiling",
                    mandatory=False,
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(escalations)))
        elapsed = time.perf_counter() - started
        for agency in (SILENT, WAITING):
            await (await channel.get_queue(topology.inbox_queue(agency))).purge()
    return elapsed


async def run_scenario(
    scenario: Scenario, n_open: int, n_due: int, work: Path, profile: Path | None
) -> dict[str, float]:
    url, delete_vhost = await fresh_vhost("deadlines")
    area = work / scenario.label.replace(" ", "-").replace(",", "")
    assert cli_main(["init", str(area), "--broker-url", url]) == 0
    config_path = area / "gateway.toml"
    text = config_path.read_text() + BENCH_DEADLINES
    drop: Callable[[], Awaitable[None]] | None = None
    store_url = None
    if scenario.store == "postgres":
        store_url, drop = await pg_schema()
        text = text.replace('url = "sqlite:///state/gateway.db"', f'url = "{store_url}"')
    config_path.write_text(text)
    routers: list[Child] = []
    try:
        store = store_from_url(store_url or f"sqlite:///{area / 'state' / 'gateway.db'}")
        await store.open()  # creates the schema
        await store.close()
        start = utc_now()
        loaded = rows(n_open)
        if store_url is None:
            load_sqlite(area / "state" / "gateway.db", loaded, start)
        else:
            await load_postgres(store_url, loaded, start)
        due = utc_now() + timedelta(seconds=LEAD_S)
        await move_burst(store_url, area, [d for _, _, d in loaded[:n_due]], due)
        for n in range(scenario.routers):
            audit = area / "state" / f"audit-{n}.jsonl"
            args = [sys.executable, "-m", "gateway", "--config", str(config_path), "run"]
            args += ["--json-logs", "--audit-log", str(audit)]
            if profile is not None and n == 0:
                args[1:3] = ["-c", PROFILED, str(profile)]
            routers.append(await spawn(args, area / f"router-{n}.log", "router.started"))
        router_pids = [r.process.pid for r in routers]

        def cpu_now() -> tuple[float, float]:
            return total_cpu_seconds(with_children(router_pids)), total_cpu_seconds(store_pids)

        store_pids = postgres_pids() if store_url else []
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            events = await channel.declare_queue(exclusive=True)
            await events.bind(topology.EVENTS_EXCHANGE, routing_key="deadline.escalated.#")
            await asyncio.sleep(1)
            idle_from = (time.monotonic(), *cpu_now())
            window = min(IDLE_WINDOW_S, (due - utc_now()).total_seconds() - 1)
            await asyncio.sleep(window)
            idle_to = (time.monotonic(), *cpu_now())
            lags, ids = await _collect(events, n_due, due)
            burst_to = (time.monotonic(), *cpu_now())
        raw = await ceiling(url, n_due)
        idle_s = idle_to[0] - idle_from[0]
        lags.sort()
        return {
            "idle_router_pct": 100 * (idle_to[1] - idle_from[1]) / idle_s,
            "idle_store_pct": 100 * (idle_to[2] - idle_from[2]) / idle_s,
            "idle_window_s": idle_s,
            "lag_p50_s": percentile(lags, 50),
            "lag_p99_s": percentile(lags, 99),
            "lag_max_s": lags[-1],
            "burst_router_cpu_s": burst_to[1] - idle_to[1],
            "burst_store_cpu_s": burst_to[2] - idle_to[2],
            "events": len(lags),
            "duplicates": len(lags) - len(ids),
            "ceiling_s": raw,
        }
    finally:
        for router in routers:
            router.stop()
        await delete_vhost()
        if drop is not None:
            await drop()


async def move_burst(store_url: str | None, area: Path, ids: list[str], due: datetime) -> None:
    """Bring ``ids`` forward to fall due together at ``due``."""
    if store_url is None:
        with sqlite3.connect(area / "state" / "gateway.db") as db:
            db.executemany(
                "UPDATE deadlines SET due_at = ?, next_at = ? WHERE deadline_id = ?",
                [(to_text(due), to_text(due), d) for d in ids],
            )
        return
    db = await asyncpg.connect(store_url)
    try:
        await db.execute(
            "UPDATE deadlines SET due_at = $1, next_at = $1 WHERE deadline_id = ANY($2::text[])",
            due,
            ids,
        )
    finally:
        await db.close()


async def _collect(
    queue: aio_pika.abc.AbstractQueue, n_due: int, due: datetime
) -> tuple[list[float], set[str]]:
    """Lag of each escalation event from the due instant to its arrival here."""
    lags: list[float] = []
    ids: set[str] = set()
    deadline = time.monotonic() + LEAD_S + 120
    async with queue.iterator() as messages:
        async for message in messages:
            arrived = datetime.now(UTC)
            await message.ack()
            event = json.loads(message.body)
            lags.append((arrived - due).total_seconds())
            ids.add(event["escalation_id"])
            if len(ids) >= n_due:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(ids)} of {n_due} escalations within the time limit")
    await asyncio.sleep(3)  # a few more ticks: any duplicate shows up now
    while (late := await queue.get(fail=False)) is not None:
        await late.ack()
        lags.append((datetime.now(UTC) - due).total_seconds())
        ids.add(json.loads(late.body)["escalation_id"])
    return lags, ids


def report(results: dict[str, dict[str, float]], n_open: int, n_due: int) -> None:
    print(f"\n{n_open:,} open deadlines, {n_due:,} due at once; level 1 only (grace 1 day)\n")
    columns = ("idle router", "idle store", "lag p50", "lag p99", "lag max", "burst CPU")
    head = (
        f"{'scenario':<24}"
        + "".join(f"{c:>12}" for c in columns)
        + f"{'dupes':>7}{'ceiling':>9}{'p99/ceil':>10}{'router/esc':>12}"
    )
    print(head)
    for label, r in results.items():
        print(
            f"{label:<24}{r['idle_router_pct']:>11.2f}%{r['idle_store_pct']:>11.2f}%"
            f"{r['lag_p50_s']:>11.2f}s{r['lag_p99_s']:>11.2f}s{r['lag_max_s']:>11.2f}s"
            f"{r['burst_router_cpu_s'] + r['burst_store_cpu_s']:>11.1f}s{int(r['duplicates']):>7}"
            f"{r['ceiling_s']:>8.2f}s{r['lag_p99_s'] / r['ceiling_s']:>9.1f}x"
            f"{1000 * r['burst_router_cpu_s'] / n_due:>9.2f} ms"
        )
    print(
        "\nidle: % of one core over the idle window (router process; store = PostgreSQL server"
        " processes, SQLite runs inside the router)."
        "\nlag: due instant to the escalation event arriving here. burst CPU: router(s) + store;"
        " router/esc: the routers' burst CPU (their sealing workers' included) per escalation."
        "\nceiling: bare aio-pika publishing the same inbox copies and events, confirmed."
        "\ntargets: idle < 5% of one core; p99 lag <= 5 s and <= 1.5x the ceiling; 0 duplicates."
    )


async def bench(quick: bool, only: str | None, profile: Path | None) -> None:
    n_open, n_due = (10_000, 1_000) if quick else (100_000, 10_000)
    results = {}
    print(f"# deadline benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mash-bench-deadlines-") as work:
        for n, scenario in enumerate(SCENARIOS, 1):
            if only is not None and str(n) not in only.split(","):
                continue
            print(f"running: {scenario.label} ...", flush=True)
            results[scenario.label] = await run_scenario(
                scenario, n_open, n_due, Path(work), profile
            )
    report(results, n_open, n_due)
    if profile is not None:
        print(f"\n# profile of the first router ({profile}), top 30 by own CPU (main thread)")
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 open, 1,000 due")
    parser.add_argument("--only", help="scenario numbers to run, e.g. 1 or 1,3 (default: all)")
    parser.add_argument(
        "--profile", type=Path, help="run the first router under cProfile (its main thread's CPU)"
    )
    args = parser.parse_args()
    profile = args.profile.resolve() if args.profile else None
    asyncio.run(bench(args.quick, args.only, profile))


if __name__ == "__main__":
    main()
