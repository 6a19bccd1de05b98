"""Cost per message as the load grows: CPU per message in each process and latency, at 1, 10
and 100 messages per second offered, beside bare aio-pika doing the same hops at the same rates.

Run: .venv/bin/python bench/load_cost.py [--seconds S]   (S per rate, default 30; about
4 minutes)

On the local RabbitMQ, in a fresh vhost per part (deleted afterwards):
- gateway: the router as deployed (``python -m gateway --config AREA run``),
  the police edge (opens, checks, hands over, receipts; ``backlog.py
  --edge``) and the hub edge (``--sender``: submits the InformationRequest
  example on a fixed schedule and takes the receipts) each in its own
  process, so each one's CPU is its own (``/proc``, user + system, every
  thread). A message is done when its receipt reaches the hub's handler;
  latency is from the start of ``submit`` to then, as in ``e2e.py``;
- raw (the ceiling, same run): ``e2e.py``'s bare aio-pika loop over the same
  4 hops with the same message sizes, its relay 32 at a time in its own
  process, both ends in this process.

CPU per message is the process's CPU over the window (first submit to last
receipt) divided by the messages: at 1 msg/s it includes what a process
spends idle in that second (timers, queue polls), which is what an area
sizing its machine pays. The idle rate of each process, measured first, is
printed beside it. The broker (``beam.smp``) serves other engineers' tests
on this machine too, so its share is printed but is only an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika

from bench.backlog import broker_pids, start_edge, start_router
from bench.e2e import (
    RECIPIENT,
    REQUEST,
    ROOT,
    SENDER,
    WARM_UP,
    Child,
    Phases,
    RawEdges,
    closed_loop,
    cpu_seconds,
    fresh_vhost,
    paced,
    percentile,
    print_table,
    sealed_sizes,
    spawn,
)
from gateway.broker import topology
from gateway.cli import main as cli_main
from gateway.config.area_config import load_config
from gateway.infra import logs
from gateway.services.edge import Delivered, Edge, Submission
from gateway.store.sqlite import SqliteStore

RATES = (1.0, 10.0, 100.0)
IDLE_S = 10.0


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with suppress(FileNotFoundError):
            total += cpu_seconds(pid)
    return total


# --- the hub edge as its own process ------------------------------------------------------


def run_sender(config_path: str, db: str) -> None:
    """The hub's edge: on each ``RATE N`` line from stdin, submit N at RATE msg/s and print the
    latencies (ms) as one JSON line once every receipt is in."""
    logs.configure(json=True, quiet=True)

    async def serve() -> None:
        store = SqliteStore(db)
        await store.open()
        phases = Phases()
        async with Edge(load_config(config_path), SENDER, store) as edge:

            async def at_hub(delivered: Delivered) -> None:
                original = delivered.header.fields.in_reply_to
                if original is not None:
                    phases.current.arrive(original)

            async def submit(phase: str) -> str:
                case = f"{phase}/{uuid.uuid4()}"
                sent = await edge.submit(Submission(REQUEST, (RECIPIENT,), correlation_id=case))
                return sent.message_id

            await edge.consume(at_hub)
            await closed_loop(submit, phases, WARM_UP, "warmup")
            print("sender.started", flush=True)
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                rate, n = line.split()
                latencies = await paced(submit, phases, int(n), f"r{rate}", float(rate))
                print(json.dumps(latencies), flush=True)
        await store.close()

    asyncio.run(serve())


@dataclass
class Sender:
    process: asyncio.subprocess.Process

    async def run(self, rate: float, n: int) -> list[float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{rate} {n}\n".encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), n / rate + 120)
        if not line:
            raise SystemExit("the sender stopped; see its log")
        latencies: list[float] = json.loads(line)
        return latencies


async def start_sender(config: Path, work: Path) -> Sender:
    args = [__file__, "--sender", str(config), str(work / "edge-hub.db")]
    with (work / "sender.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=ROOT, stdin=-1, stdout=-1, stderr=log
        )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    if b"sender.started" not in line:
        raise SystemExit(f"the sender did not start: {line!r}; see {work / 'sender.log'}")
    return Sender(process)


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Window:
    """CPU seconds of each process over one rate's window, and the latencies."""

    rate: float
    messages: int
    seconds: float
    cpu: dict[str, float]
    latencies: list[float]


async def gateway_part(seconds: float, work: Path) -> tuple[dict[str, float], list[Window]]:
    url, delete = await fresh_vhost("load-cost")
    area = work / "area"
    assert cli_main(["init", str(area), "--broker-url", url]) == 0
    config = area / "gateway.toml"
    children: list[Child] = []
    sender: Sender | None = None
    try:
        router = await start_router(config, area / "router.log")
        children.append(router)
        police = await start_edge(RECIPIENT, config, area)
        children.append(police)
        sender = await start_sender(config, area)
        pids = {
            "router": [router.process.pid],
            "police edge": [police.process.pid],
            "hub edge": [sender.process.pid],
            "broker (shared)": broker_pids(),
        }
        before = {k: cpu_of(v) for k, v in pids.items()}
        await asyncio.sleep(IDLE_S)
        idle = {k: (cpu_of(v) - before[k]) / IDLE_S for k, v in pids.items()}
        windows = []
        for rate in RATES:
            n = max(1, int(rate * seconds))
            before = {k: cpu_of(v) for k, v in pids.items()}
            started = time.perf_counter()
            latencies = await sender.run(rate, n)
            elapsed = time.perf_counter() - started
            cpu = {k: cpu_of(v) - before[k] for k, v in pids.items()}
            windows.append(Window(rate, n, elapsed, cpu, latencies))
        return idle, windows
    finally:
        if sender is not None:
            with suppress(ProcessLookupError):
                sender.process.terminate()
            await sender.process.wait()
        for child in children:
            child.stop()
        await delete()


async def raw_part(seconds: float, sizes: tuple[int, int], work: Path) -> list[Window]:
    url, delete = await fresh_vhost("load-cost-raw")
    child: Child | None = None
    edges: RawEdges | None = None
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            await topology.declare(
                await connection.channel(), [SENDER, RECIPIENT], topology.Limits()
            )
        relay = [sys.executable, str(ROOT / "bench" / "e2e.py"), "--relay", "concurrent", url]
        child = await spawn(relay, work / "relay.log", "ready")
        phases = Phases()
        edges = RawEdges(url, sizes[0], sizes[1], phases)
        await edges.start()
        await closed_loop(edges.submit, phases, WARM_UP, "warmup")
        windows = []
        for rate in RATES:
            n = max(1, int(rate * seconds))
            relay_cpu, own_cpu = cpu_of([child.process.pid]), time.process_time()
            started = time.perf_counter()
            latencies = await paced(edges.submit, phases, n, f"r{rate}", rate)
            elapsed = time.perf_counter() - started
            cpu = {
                "relay": cpu_of([child.process.pid]) - relay_cpu,
                "both ends": time.process_time() - own_cpu,
            }
            windows.append(Window(rate, n, elapsed, cpu, latencies))
        return windows
    finally:
        if edges is not None:
            await edges.close()
        if child is not None:
            child.stop()
        await delete()


def report(idle: dict[str, float], gateway: list[Window], raw: list[Window]) -> None:
    rows: list[tuple[str, str]] = []
    for g, r in zip(gateway, raw, strict=True):
        label = f"{g.rate:.0f} msg/s offered ({g.messages} messages)"
        rows.append((label, f"done in {g.seconds:.1f} s (raw {r.seconds:.1f} s)"))
        rows.append(
            (
                "  p50 / p99, gateway; raw",
                f"{percentile(g.latencies, 50):.1f} / {percentile(g.latencies, 99):.1f} ms;"
                f" {percentile(r.latencies, 50):.1f} / {percentile(r.latencies, 99):.1f} ms",
            )
        )
        for process, cpu in g.cpu.items():
            above_idle = (cpu - idle[process] * g.seconds) / g.messages * 1000
            rows.append(
                (
                    f"  CPU per message, {process}; above its idle rate",
                    f"{cpu / g.messages * 1000:.2f}; {above_idle:.2f} ms",
                )
            )
        rows.append(
            (
                "  CPU per message, gateway total (router + edges)",
                f"{sum(v for k, v in g.cpu.items() if 'broker' not in k) / g.messages * 1000:.2f}"
                " ms",
            )
        )
        rows.append(
            (
                "  CPU per message, raw relay; raw both ends",
                f"{r.cpu['relay'] / r.messages * 1000:.2f}; "
                f"{r.cpu['both ends'] / r.messages * 1000:.2f} ms",
            )
        )
    rows.append(
        (
            "idle CPU, % of a core: " + ", ".join(idle),
            ", ".join(f"{v * 100:.2f}%" for v in idle.values()),
        )
    )
    print_table(rows)


async def bench(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="mash-bench-load-cost-") as tmp:
        work = Path(tmp)
        print("running: gateway ...", flush=True)
        idle, gateway = await gateway_part(seconds, work)
        sizes = sealed_sizes(load_config(str(work / "area" / "gateway.toml")))
        print("running: raw ...", flush=True)
        raw = await raw_part(seconds, sizes, work)
    report(idle, gateway, raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds at each rate")
    parser.add_argument("--sender", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        run_sender(*args.sender)
        return
    logs.configure(json=True, quiet=True)
    print(
        f"# load cost benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z},"
        f" {os.cpu_count()} cores, {args.seconds:.0f} s per rate"
    )
    asyncio.run(bench(args.seconds))


if __name__ == "__main__":
    main()
