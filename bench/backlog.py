"""Backlog benchmark: how a queue that built up during an outage drains, beside the raw ceiling.

Run: .venv/bin/python bench/backlog.py [--messages N]   (default 5,000, at
most 20,000: one agency's ingress bound, which the router outage fills from
the hub alone; the issue's weekend of 100,000 would now be spread over
several agencies' ingress queues)

Two outages, each on a fresh vhost (deleted afterwards), with the router as
deployed (``python -m gateway --config AREA run``, its own process) and each
edge in its own process (``--edge``, an Edge with its own SQLite store, as
an agency runs it):
- **edge outage:** the police edge is down; the hub submits N requests, the
  router routes them into ``agency.police.inbox``, where they wait. Then the
  police edge starts and drains them (opens, checks, hands over, sends a
  receipt the router forwards to the hub);
- **router outage:** the router is down; the hub submits N requests, which
  wait in the hub's ingress queue ``gateway.ingress.hub`` (bounded at 20,000
  per agency: past that the hub's submits are refused, so a router outage
  backlog of more than that is spread over several agencies' queues). Then
  the router starts and routes them; the
  police edge (running) receipts each, the router forwards the receipts.

For each it prints the drain rate over time (per fifth of the backlog: a
rate that falls as the queue shrinks, or grows with its length, shows
there), the whole drain's rate beside the **raw ceiling measured in the same
run** (bare aio-pika draining a backlog of the same size and message size
from the same quorum queue with the same prefetch: consume, publish a
receipt-sized message confirmed, ack; for the router queue, e2e.py's relay
32 at a time), and memory: the router's RSS (from /proc) and the broker's
(``beam.smp`` RSS, and the queue's own memory from ``rabbitmqctl
list_queues``) before the backlog, with it full, and the peaks while
draining. The broker is shared with other engineers' tests, so its RSS
moves with theirs; the queue's own memory does not.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from bench.e2e import (
    RECIPIENT,
    REQUEST,
    SENDER,
    Child,
    fresh_vhost,
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

BENCH = str(Path(__file__).resolve())
SUBMITTERS = 64
SAMPLE_S = 1.0
FIFTHS = 5


# --- measuring ---------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (from /proc; 0 once it has exited)."""
    with suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@functools.cache
def broker_pids() -> list[int]:
    """The OS process of the node at 127.0.0.1:5672, as ``rabbitmqctl status`` names it (other
    engineers' cluster tests run more ``beam.smp`` nodes on this machine; they are not counted)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return []
    done = subprocess.run(
        [ctl, "status", "--formatter", "json"], capture_output=True, timeout=60, check=False
    )
    with suppress(ValueError, KeyError, TypeError):
        return [int(json.loads(done.stdout)["pid"])]
    return []


def broker_rss_mib() -> float:
    return sum(rss_mib(pid) for pid in broker_pids())


def queue_memory_mib(vhost: str, queue: str) -> float | None:
    """The queue's own memory as the broker counts it (rabbitmqctl; None if unavailable)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return None
    done = subprocess.run(
        [ctl, "list_queues", "-p", vhost, "name", "memory", "--no-table-headers", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in done.stdout.splitlines():
        name, _, memory = line.partition("\t")
        if name.strip() == queue and memory.strip().isdigit():
            return int(memory) / 2**20
    return None


@dataclass
class Memory:
    """RSS samples of the router (when it runs) and the broker, by phase."""

    router_pid: int | None = None
    peaks: dict[str, tuple[float, float]] = field(default_factory=dict)

    def sample(self, phase: str) -> None:
        router = rss_mib(self.router_pid) if self.router_pid else 0.0
        broker = broker_rss_mib()
        old_router, old_broker = self.peaks.get(phase, (0.0, 0.0))
        self.peaks[phase] = (max(old_router, router), max(old_broker, broker))


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and not yet acked)."""
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def watch_drain(
    left: Callable[[], Awaitable[int]], total: int, memory: Memory, phase: str, started: float
) -> list[tuple[float, int]]:
    """(seconds since ``started``, messages still waiting) every SAMPLE_S until none are."""
    samples = [(time.perf_counter() - started, await left())]
    deadline = started + 120 + total / 5
    while samples[-1][1] > 0:
        await asyncio.sleep(SAMPLE_S)
        memory.sample(phase)
        samples.append((time.perf_counter() - started, await left()))
        if time.perf_counter() > deadline:
            raise SystemExit(f"{phase}: {samples[-1][1]} of {total} still waiting; see the logs")
    return samples


def fifths(samples: list[tuple[float, int]], total: int) -> list[float]:
    """Drain rate (msg/s) over each fifth of the backlog, first (longest queue) to last."""
    rates = []
    for n in range(FIFTHS):
        high, low = total * (FIFTHS - n) / FIFTHS, total * (FIFTHS - n - 1) / FIFTHS
        rates.append((total / FIFTHS) / max(crossing(samples, low) - crossing(samples, high), 1e-3))
    return rates


def crossing(samples: list[tuple[float, int]], level: float) -> float:
    """When the waiting count fell to ``level``, between the samples either side of it."""
    for (t0, w0), (t1, w1) in itertools.pairwise(samples):
        if w1 <= level < w0:
            return t0 + (t1 - t0) * (w0 - level) / (w0 - w1)
    return samples[0][0]  # already below it when the drain started


def overall(samples: list[tuple[float, int]]) -> float:
    """From the process's ready marker to an empty backlog."""
    (start, waiting), (end, _) = samples[0], samples[-1]
    return waiting / (end - start)


# --- the gateway's processes -------------------------------------------------------------


async def start_router(config: Path, log: Path) -> Child:
    args = [sys.executable, "-m", "gateway", "--config", str(config), "run", "--json-logs"]
    return await spawn(args, log, "router.started")


async def start_edge(agency: str, config: Path, work: Path) -> Child:
    args = [sys.executable, BENCH, "--edge", agency, str(config), str(work / f"edge-{agency}.db")]
    return await spawn(args, work / f"edge-{agency}.log", "edge.started")


def run_edge(agency: str, config_path: str, db: str) -> None:
    """An agency's edge in its own process: the agency system takes each message; receipts go."""
    logs.configure(json=True, quiet=True)

    async def serve() -> None:
        store = SqliteStore(db)
        await store.open()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        async def take(delivered: Delivered) -> None:
            return None

        async with Edge(load_config(config_path), agency, store) as edge:
            await edge.consume(take)
            print("edge.started", flush=True)
            await stop.wait()
        await store.close()

    asyncio.run(serve())


@dataclass
class Hub:
    """The hub's edge in this process: submits requests, counts the receipts that come back."""

    edge: Edge
    receipts: set[str] = field(default_factory=set)

    async def start(self) -> None:
        async def at_hub(delivered: Delivered) -> None:
            original = delivered.header.fields.in_reply_to
            if original is not None:
                self.receipts.add(original)

        await self.edge.consume(at_hub)

    async def submit_all(self, n: int, memory: Memory, phase: str) -> float:
        """Submit ``n`` requests, 64 at a time; seconds taken."""
        remaining = iter(range(n))

        async def submitter() -> None:
            for _ in remaining:
                case = f"backlog/{uuid.uuid4()}"
                await self.edge.submit(Submission(REQUEST, (RECIPIENT,), correlation_id=case))

        async def sampler() -> None:
            while True:
                memory.sample(phase)
                await asyncio.sleep(SAMPLE_S)

        started = time.perf_counter()
        sampling = asyncio.create_task(sampler())
        try:
            await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        finally:
            sampling.cancel()
        return time.perf_counter() - started


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        await asyncio.sleep(0.5)


@dataclass
class Result:
    fill_s: float
    samples: list[tuple[float, int]]
    memory: Memory
    queue_mib: float | None
    raw_samples: list[tuple[float, int]] = field(default_factory=list)


async def gateway_outage(which: str, n: int, work: Path) -> Result:
    """``which``: "edge" (police edge down) or "router" (router down) while N build up."""
    url, delete = await fresh_vhost(f"backlog-{which}")
    area = work / f"area-{which}"
    assert cli_main(["init", str(area), "--broker-url", url]) == 0
    config_path = area / "gateway.toml"
    config = load_config(str(config_path))
    vhost = url.rsplit("/", 1)[1]
    children: dict[str, Child] = {}
    memory = Memory()
    queue = topology.inbox_queue(RECIPIENT) if which == "edge" else topology.ingress_queue(SENDER)
    store = SqliteStore(str(area / f"edge-{SENDER}.db"))
    await store.open()
    try:
        children["router"] = await start_router(config_path, area / "router.log")
        if which == "router":  # it has declared the topology; now it goes down
            children.pop("router").stop()
            children["police"] = await start_edge(RECIPIENT, config_path, area)
        memory.router_pid = children["router"].process.pid if "router" in children else None
        async with Edge(config, SENDER, store) as edge:
            hub = Hub(edge)
            await hub.start()
            connection = await aio_pika.connect(url)
            async with connection:
                channel = await connection.channel()
                memory.sample("before")
                fill_s = await hub.submit_all(n, memory, "filling")

                async def full() -> bool:
                    return await depth(channel, queue) >= n

                await wait_until(full, f"{n} messages in {queue}", 60 + n / 5)
                await asyncio.sleep(2)
                memory.sample("full")
                queue_mib = queue_memory_mib(vhost, queue)
                if which == "edge":
                    children["police"] = await start_edge(RECIPIENT, config_path, area)
                else:
                    children["router"] = await start_router(config_path, area / "router.log")
                    memory.router_pid = children["router"].process.pid
                started = time.perf_counter()  # the drain's clock starts once it is ready

                async def left() -> int:
                    return n - len(hub.receipts)

                samples = await watch_drain(left, n, memory, "draining", started)
        return Result(fill_s, samples, memory, queue_mib)
    finally:
        for child in children.values():
            child.stop()
        await store.close()
        await delete()


# --- raw: bare aio-pika draining the same backlog ------------------------------------------


async def raw_fill(url: str, queue: str, n: int, size: int) -> None:
    """N messages of ``size`` random bytes into ``queue``, confirmed, 500 in flight."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        ingress = queue == topology.ingress_queue(SENDER)
        exchange = await channel.get_exchange(
            topology.ingress_exchange(SENDER) if ingress else topology.DELIVER_EXCHANGE
        )
        key = topology.INGRESS_ROUTING_KEY if ingress else RECIPIENT
        body = os.urandom(size)
        gate = asyncio.Semaphore(500)

        async def one(i: int) -> None:
            async with gate:
                message = aio_pika.Message(
                    body, delivery_mode=DeliveryMode.PERSISTENT, type="request", message_id=str(i)
                )
                await exchange.publish(message, routing_key=key, mandatory=True)

        await asyncio.gather(*(one(i) for i in range(n)))


def raw_drainer(url: str, receipt_size: int) -> None:
    """The raw stand-in for the police edge: take a message, publish a receipt confirmed, ack."""

    async def serve() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=32)
            ingress = await channel.get_exchange(topology.ingress_exchange(RECIPIENT))
            body = os.urandom(receipt_size)

            async def on_message(message: AbstractIncomingMessage) -> None:
                receipt = aio_pika.Message(body, delivery_mode=DeliveryMode.PERSISTENT)
                await ingress.publish(receipt, topology.INGRESS_ROUTING_KEY, mandatory=True)
                await message.ack()

            queue = await channel.get_queue(topology.inbox_queue(RECIPIENT))
            await queue.consume(on_message)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("ready", flush=True)
            await stop.wait()

    asyncio.run(serve())


async def raw_outage(which: str, n: int, sizes: tuple[int, int], work: Path) -> Result:
    url, delete = await fresh_vhost(f"backlog-raw-{which}")
    queue = topology.inbox_queue(RECIPIENT) if which == "edge" else topology.ingress_queue(SENDER)
    memory = Memory()
    child: Child | None = None
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await topology.declare(channel, [SENDER, RECIPIENT], topology.Limits())
            filling = time.perf_counter()
            await raw_fill(url, queue, n, sizes[0])
            fill_s = time.perf_counter() - filling
            if which == "edge":
                args = [sys.executable, BENCH, "--raw-drainer", url, str(sizes[1])]
            else:
                args = [sys.executable, str(Path(BENCH).with_name("e2e.py")), "--relay"]
                args += ["concurrent", url]
            child = await spawn(args, work / f"raw-{which}.log", "ready")
            started = time.perf_counter()

            async def left() -> int:
                return await depth(channel, queue)

            samples = await watch_drain(left, n, memory, "draining", started)
        return Result(fill_s, samples, memory, None)
    finally:
        if child is not None:
            child.stop()
        await delete()


# --- report ------------------------------------------------------------------------------


def report(n: int, results: dict[str, Result]) -> None:
    rows: list[tuple[str, str]] = []
    for which, label in (("edge", "police edge down"), ("router", "router down")):
        r = results[which]
        gateway_rate, raw_rate = overall(r.samples), overall(r.raw_samples)
        rates, raw_rates = fifths(r.samples, n), fifths(r.raw_samples, n)
        before, full = r.memory.peaks["before"], r.memory.peaks["full"]
        filling, draining = r.memory.peaks["filling"], r.memory.peaks["draining"]
        rows += [
            (f"{label}: {n} built up in", f"{r.fill_s:.0f} s ({n / r.fill_s:.0f} msg/s)"),
            ("  drained, gateway / raw ceiling", f"{gateway_rate:.0f} / {raw_rate:.0f} msg/s"),
            ("    gateway / raw", f"{gateway_rate / raw_rate:.0%}"),
            (
                "  drain rate by fifth of the backlog, gateway",
                " / ".join(f"{x:.0f}" for x in rates) + " msg/s",
            ),
            ("    the same, raw", " / ".join(f"{x:.0f}" for x in raw_rates) + " msg/s"),
            ("    slowest fifth / fastest fifth, gateway", f"{min(rates) / max(rates):.0%}"),
            ("    last fifth / first fifth, gateway", f"{rates[-1] / rates[0]:.0%}"),
            (
                "  router RSS: before; max filling; full; max draining",
                f"{before[0]:.0f}; {filling[0]:.0f}; {full[0]:.0f}; {draining[0]:.0f} MiB"
                if which == "edge"
                else f"down; down; down; {draining[0]:.0f} MiB",
            ),
            (
                "  broker RSS (its beam.smp, shared): before; full; max draining",
                f"{before[1]:.0f}; {full[1]:.0f}; {draining[1]:.0f} MiB",
            ),
            (
                "  the queue's own memory, full (rabbitmqctl)",
                "n/a" if r.queue_mib is None else f"{r.queue_mib:.1f} MiB",
            ),
        ]
    print_table(rows)


async def bench(n: int) -> None:
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="mash-bench-backlog-") as tmp:
        work = Path(tmp)
        for which in ("edge", "router"):
            print(f"running: {which} outage, gateway ...", flush=True)
            results[which] = await gateway_outage(which, n, work)
        sizes = sealed_sizes(load_config(str(work / "area-edge" / "gateway.toml")))
        for which in ("edge", "router"):
            print(f"running: {which} outage, raw ...", flush=True)
            results[which].raw_samples = (await raw_outage(which, n, sizes, work)).samples
    report(n, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000, help="backlog size (<= 20,000)")
    parser.add_argument("--edge", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--raw-drainer", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.edge:
        run_edge(*args.edge)
        return
    if args.raw_drainer:
        raw_drainer(args.raw_drainer[0], int(args.raw_drainer[1]))
        return
    if not 0 < args.messages <= topology.Limits().ingress_max_length:
        raise SystemExit("--messages must be between 1 and one agency's ingress bound, 20,000")
    logs.configure(json=True, quiet=True)
    print(
        f"# backlog benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()}"
        f" cores, backlog {args.messages:,}"
    )
    try:
        asyncio.run(bench(args.messages))
    except asyncio.CancelledError:
        raise SystemExit("interrupted; the processes and the vhosts are cleaned up") from None


if __name__ == "__main__":
    main()
