"""Backlog benchmark: how a queue that built up during an outage drains, beside the raw ceiling.

Run: .venv/bin/python bench/backlog.py [--messages N] [--only edge|router]
(default 5,000; the issue's weekend is ``--messages 100000``, at most the
agency inbox's bound, ``topology.Limits.inbox_max_length``, 100,000)

Two outages, each on a fresh vhost (deleted afterwards), with the router as
deployed (``python -m gateway --config AREA run``, its own process), each
edge in its own process (``--edge``: an Edge with its own SQLite store, as
an agency runs it), and the backlog built up by several sender processes
(``--sender``, 64 submits in flight each; the build-up rate is not the
measured figure):
- **edge outage:** the police edge is down; two hub processes submit N
  InformationRequests, the router routes them into ``agency.police.inbox``
  (bounded at 100,000: a larger weekend's excess would be refused), where
  they wait. Then the police edge starts and drains them (opens, checks,
  hands over, sends a receipt through police's own ingress
  ``gateway.ingress.police``; the router forwards it to ``agency.hub.inbox``,
  where the receipts are counted). Progress: the police inbox's depth.
- **router outage:** the router is down; the six partners (police, csc,
  health, probation, education, housing) each submit N/6 Referrals to the
  hub from a process of their own, which wait in their own ingress queues
  ``gateway.ingress.<id>`` (each bounded at 20,000: a router outage's
  100,000 fits only spread over several agencies). Then the router starts
  and works through all six at once; the hub edge (running) receipts each
  referral through ``gateway.ingress.hub``, and the router forwards the
  receipts to the partners' inboxes, where they are counted. Progress: the
  six queues' depths together; each queue's depth over time shows whether
  the router is fair between agencies as their queues shrink.

For each it prints the drain rate per fifth of the backlog (a rate that
falls as the queue shrinks, or grows with its length, shows there), the
whole drain's rate beside the **raw ceiling measured in the same run**
(bare aio-pika draining a backlog of the same size and message sizes from
the same quorum queues, prefetch 32 per queue: a raw edge takes each
message from the inbox, publishes a receipt-sized message to its ingress
confirmed and acks; a raw router relays every ingress queue it needs, each
on a channel of its own, publishing each message confirmed to the inbox it
names, then acking: police's receipts to the hub, or the six partners'
backlog to the hub and the raw hub's receipts back),
when the last receipt came back, and memory: the router's RSS (from /proc)
and the broker node's (``beam.smp`` RSS, and the queues' own memory from
``rabbitmqctl list_queues``) before the backlog, while it builds, with it
full, and the peaks while draining. The broker is shared with other
engineers' tests, so its RSS moves with theirs; the queues' own memory does not.
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    ROOT,
    SENDER,
    Child,
    fresh_vhost,
    print_table,
    sealed_sizes,
    spawn,
)
from gateway.broker import topology
from gateway.broker.publisher import PublishNacked
from gateway.cli import main as cli_main
from gateway.config.area_config import load_config
from gateway.demo.area import PARTNERS
from gateway.infra import logs
from gateway.services.edge import Delivered, Edge, Submission
from gateway.store.sqlite import SqliteStore

BENCH = str(Path(__file__).resolve())
HUB = SENDER
# The referral example less its UPN, which only education flows may carry (core/sharing.py).
REFERRAL = b"".join(
    line
    for line in (ROOT / "schemas" / "examples" / "valid" / "referral.xml")
    .read_bytes()
    .splitlines(keepends=True)
    if b'scheme="upn"' not in line
)
SUBMITTERS = 64  # submits in flight per sender process
EDGE_FILLERS = 2  # hub processes building the edge outage's backlog
PREFETCH = 32  # the Edge's and the router's default, per queue
SAMPLE_S = 1.0
FIFTHS = 5
STALL_S = 300  # a phase whose queues do not move for this long is reported stuck

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


def queues_memory_mib(vhost: str, queues: Sequence[str]) -> float | None:
    """The queues' own memory together, as the broker counts it (rabbitmqctl; None if
    unavailable)."""
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
    found = {}
    for line in done.stdout.splitlines():
        name, _, memory = line.partition("\t")
        if name.strip() in queues and memory.strip().isdigit():
            found[name.strip()] = int(memory) / 2**20
    return sum(found.values()) if len(found) == len(queues) else None


@dataclass
class Memory:
    """RSS peaks of the router (when it runs) and the broker node, by phase."""

    router_pid: int | None = None
    peaks: dict[str, tuple[float, float]] = field(default_factory=dict)

    def sample(self, phase: str) -> None:
        router = rss_mib(self.router_pid) if self.router_pid else 0.0
        broker = broker_rss_mib()
        old_router, old_broker = self.peaks.get(phase, (0.0, 0.0))
        self.peaks[phase] = (max(old_router, router), max(old_broker, broker))


async def depths(channel: aio_pika.abc.AbstractChannel, queues: Sequence[str]) -> dict[str, int]:
    """Messages ready in each queue (not counting those delivered and not yet acked)."""
    counts = {}
    for name in queues:
        declared = await channel.declare_queue(name, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        counts[name] = count
    return counts


Sample = tuple[float, dict[str, int]]


async def watch(
    probe: Callable[[], Awaitable[dict[str, int]]],
    done: Callable[[dict[str, int]], bool],
    before: dict[str, int],
    memory: Memory,
    phase: str,
    started: float,
) -> list[Sample]:
    """(seconds since ``started``, each queue's depth) every SAMPLE_S until ``done``.

    The first sample is ``before``, the depths read before the draining process started: what
    it took into its prefetch windows while starting is not drained yet (RabbitMQ counts only
    ready messages), so the drain's clock starts at its ready marker with the whole backlog.
    """
    samples = [(0.0, before)]
    moved = time.perf_counter()
    while not done(samples[-1][1]):
        await asyncio.sleep(SAMPLE_S)
        memory.sample(phase)
        samples.append((time.perf_counter() - started, await probe()))
        if samples[-1][1] != samples[-2][1]:
            moved = time.perf_counter()
        elif time.perf_counter() - moved > STALL_S:
            raise SystemExit(f"{phase}: stuck at {samples[-1][1]}; see the logs")
    return samples


def series(samples: list[Sample], queues: Sequence[str]) -> list[tuple[float, int]]:
    """(time, the queues' depths together) from ``watch``'s samples."""
    return [(t, sum(d[q] for q in queues)) for t, d in samples]


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


def rising(samples: list[tuple[float, int]], level: int) -> float:
    """When a growing count (receipts come back) first reached ``level``."""
    return next(t for t, count in samples if count >= level)


def overall(samples: list[tuple[float, int]]) -> float:
    """From the process's ready marker to an empty backlog."""
    return samples[0][1] / max(crossing(samples, 0) - samples[0][0], 1e-3)


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


def run_sender(agency: str, config_path: str, db: str, count: int) -> None:
    """An agency's edge that submits ``count`` messages, SUBMITTERS at a time, and exits: the hub
    InformationRequests to police, a partner Referrals to the hub."""
    logs.configure(json=True, quiet=True)
    payload, to = (REQUEST, RECIPIENT) if agency == HUB else (REFERRAL, HUB)

    async def send() -> None:
        store = SqliteStore(db)
        await store.open()
        try:
            async with Edge(load_config(config_path), agency, store) as edge:
                remaining = iter(range(count))

                async def submitter() -> None:
                    for _ in remaining:
                        case = f"backlog/{uuid.uuid4()}"
                        while True:  # a full ingress queue outlasting the edge's retry budget
                            with suppress(PublishNacked):
                                await edge.submit(Submission(payload, (to,), correlation_id=case))
                                break

                await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        finally:
            await store.close()
        print("sent", count, flush=True)

    asyncio.run(send())


async def build_up(shares: Mapping[str, int], config: Path, work: Path, memory: Memory) -> None:
    """One sender process per entry (an agency, or ``hub#1`` for a second hub process)
    submitting its share; returns once all have exited."""
    processes = {}
    for name, count in shares.items():
        agency = name.split("#")[0]
        log = work / f"sender-{name}.log"
        args = [sys.executable, BENCH, "--sender", agency, str(config)]
        args += [str(work / f"sender-{name}.db"), str(count)]
        with log.open("wb") as out:
            processes[name] = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        while any(p.poll() is None for p in processes.values()):
            memory.sample("filling")
            await asyncio.sleep(SAMPLE_S)
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
    for name, p in processes.items():
        if p.returncode != 0:
            tail = (work / f"sender-{name}.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"sender {name} exited {p.returncode}:\n{tail}")


def split(n: int, names: Sequence[str]) -> dict[str, int]:
    """``n`` shared as evenly as it goes between ``names``."""
    return {name: n // len(names) + (i < n % len(names)) for i, name in enumerate(names)}


async def wait_full(channel: aio_pika.abc.AbstractChannel, queues: Sequence[str], n: int) -> None:
    """Until ``queues`` hold ``n`` messages together; stuck if they stop growing short of it."""
    moved, last = time.monotonic(), -1
    while (count := sum((await depths(channel, queues)).values())) < n:
        if count != last:
            moved, last = time.monotonic(), count
        elif time.monotonic() - moved > STALL_S:
            raise SystemExit(f"{', '.join(queues)} stopped at {count} of {n}; see the logs")
        await asyncio.sleep(SAMPLE_S)


@dataclass
class Result:
    """One outage, the gateway's or the raw one: the backlog's queues, the receipts' inboxes."""

    drained: list[str]
    receipts: list[str]
    samples: list[Sample]
    fill_s: float = 0.0
    memory: Memory = field(default_factory=Memory)
    queue_mib: float | None = None


def backlog_queues(which: str) -> tuple[list[str], list[str], list[str]]:
    """The outage's senders, the queues its backlog waits in, and where the receipts arrive."""
    if which == "edge":
        return [HUB], [topology.inbox_queue(RECIPIENT)], [topology.inbox_queue(HUB)]
    senders = list(PARTNERS)
    return (
        senders,
        [topology.ingress_queue(a) for a in senders],
        [topology.inbox_queue(a) for a in senders],
    )


def without_delivery_escalations(config: Path) -> None:
    """Give deliveries a week instead of the default 15 minutes (core/deadlines.py).

    A backlog of 100,000 takes longer than 15 minutes to build and drain, and
    every message not receipted by then would escalate to the agency whose edge
    is down, into the same inbox: those escalations are not the backlog
    measured here (the report names them as a finding of their own).
    """
    text = config.read_text()
    calendar = "\n[deadlines.calendar]\n"
    assert calendar in text, "the demo area's [deadlines.calendar] table moved"
    delivery = '\n[deadlines]\ndelivery = { duration = "7d", counting = "clock" }\n'
    config.write_text(text.replace(calendar, delivery + calendar, 1))


async def gateway_outage(which: str, n: int, work: Path) -> Result:
    """``which``: "edge" (police edge down) or "router" (router down) while N build up."""
    url, delete = await fresh_vhost(f"backlog-{which}")
    area = work / f"area-{which}"
    assert cli_main(["init", str(area), "--broker-url", url]) == 0
    config = area / "gateway.toml"
    without_delivery_escalations(config)
    vhost = url.rsplit("/", 1)[1]
    senders, drained, receipts = backlog_queues(which)
    watched = [*drained, *receipts, topology.ingress_queue(HUB)]
    children: dict[str, Child] = {}
    memory = Memory()
    try:
        children["router"] = await start_router(config, area / "router.log")
        memory.router_pid = children["router"].process.pid
        if which == "router":  # it has declared the topology; now it goes down
            children.pop("router").stop()
            memory.router_pid = None
            children[HUB] = await start_edge(HUB, config, area)
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            memory.sample("before")
            if which == "edge":
                shares = split(n, [f"{HUB}#{i}" for i in range(EDGE_FILLERS)])
            else:
                shares = split(n, senders)
            filling = time.perf_counter()
            await build_up(shares, config, area, memory)

            await wait_full(channel, drained, n)
            fill_s = time.perf_counter() - filling
            await asyncio.sleep(2)
            memory.sample("full")
            queue_mib = queues_memory_mib(vhost, drained)
            before = await depths(channel, watched)
            if which == "edge":
                children[RECIPIENT] = await start_edge(RECIPIENT, config, area)
            else:
                children["router"] = await start_router(config, area / "router.log")
                memory.router_pid = children["router"].process.pid
            started = time.perf_counter()  # the drain's clock starts once it is ready

            def done(d: dict[str, int]) -> bool:
                return sum(d[q] for q in drained) == 0 and sum(d[q] for q in receipts) >= n

            async def probe() -> dict[str, int]:
                return await depths(channel, watched)

            samples = await watch(probe, done, before, memory, "draining", started)
        return Result(drained, receipts, samples, fill_s, memory, queue_mib)
    finally:
        for child in children.values():
            child.stop()
        await delete()


# --- raw: bare aio-pika draining the same backlog ------------------------------------------


async def raw_fill(url: str, shares: Mapping[str, int], to: str, size: int) -> None:
    """Each sender's share of ``size`` random bytes, confirmed, 500 in flight: into police's
    inbox (``to`` police) or into each sender's ingress queue (``to`` the hub)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        body = os.urandom(size)
        gate = asyncio.Semaphore(500)

        async def one(sender: str, i: int) -> None:
            if to == RECIPIENT:
                name, key = topology.DELIVER_EXCHANGE, RECIPIENT
            else:
                name, key = topology.ingress_exchange(sender), topology.INGRESS_ROUTING_KEY
            async with gate:
                exchange = await channel.get_exchange(name, ensure=False)
                message = aio_pika.Message(
                    body,
                    delivery_mode=DeliveryMode.PERSISTENT,
                    message_id=f"{sender}-{i}",
                    headers={"from": sender, "to": to},
                )
                await exchange.publish(message, routing_key=key, mandatory=True)

        await asyncio.gather(*(one(s, i) for s, count in shares.items() for i in range(count)))


def raw_drainer(url: str, agency: str, receipt_size: int) -> None:
    """The raw stand-in for an agency's edge: take a message from its inbox, publish a receipt
    to its ingress confirmed, ack."""

    async def serve() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=PREFETCH)
            ingress = await channel.get_exchange(topology.ingress_exchange(agency))
            body = os.urandom(receipt_size)

            async def on_message(message: AbstractIncomingMessage) -> None:
                headers = {"from": agency, "to": message.headers.get("from", "")}
                receipt = aio_pika.Message(
                    body, delivery_mode=DeliveryMode.PERSISTENT, headers=headers
                )
                pause = 0.2
                while True:  # a full ingress queue nacks: wait for room, as the Edge does
                    try:
                        await ingress.publish(receipt, topology.INGRESS_ROUTING_KEY, mandatory=True)
                        break
                    except aio_pika.exceptions.DeliveryError:
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, 5.0)
                await message.ack()

            queue = await channel.get_queue(topology.inbox_queue(agency))
            await queue.consume(on_message)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("ready", flush=True)
            await stop.wait()

    asyncio.run(serve())


def raw_relay(url: str, agencies: str) -> None:
    """The raw stand-in for the router: each agency's ingress on a channel of its own with its
    own prefetch window, each message published to the inbox its ``to`` header names,
    confirmed, then acked."""

    async def serve() -> None:
        connection = await aio_pika.connect(url)
        async with connection:
            for agency in agencies.split(","):
                channel = await connection.channel(publisher_confirms=True)
                await channel.set_qos(prefetch_count=PREFETCH)
                deliver = await channel.get_exchange(topology.DELIVER_EXCHANGE)

                async def on_message(
                    message: AbstractIncomingMessage,
                    deliver: aio_pika.abc.AbstractExchange = deliver,
                ) -> None:
                    forward = aio_pika.Message(
                        message.body, delivery_mode=DeliveryMode.PERSISTENT, headers=message.headers
                    )
                    await deliver.publish(forward, str(message.headers["to"]), mandatory=True)
                    await message.ack()

                queue = await channel.get_queue(topology.ingress_queue(agency))
                await queue.consume(on_message)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print("ready", flush=True)
            await stop.wait()

    asyncio.run(serve())


async def raw_outage(which: str, n: int, sizes: tuple[int, int], work: Path) -> Result:
    """The same backlog of bare messages, drained by the raw stand-ins."""
    url, delete = await fresh_vhost(f"backlog-raw-{which}")
    senders, drained, receipts = backlog_queues(which)
    children: list[Child] = []
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await topology.declare(channel, [*senders, HUB, RECIPIENT], topology.Limits())
            filling = time.perf_counter()
            await raw_fill(url, split(n, senders), RECIPIENT if which == "edge" else HUB, sizes[0])
            fill_s = time.perf_counter() - filling
            watched = [*drained, *receipts, topology.ingress_queue(HUB)]
            before = await depths(channel, watched)
            # the drainer stands in for the edge that was down (police) or is up (the hub);
            # the relay for the router, forwarding its receipts (and, router down, the backlog)
            drainer, relayed = (RECIPIENT, [RECIPIENT]) if which == "edge" else (HUB, senders)
            args = [sys.executable, BENCH, "--raw-drainer", url, drainer, str(sizes[1])]
            children.append(await spawn(args, work / f"raw-{drainer}.log", "ready"))
            args = [sys.executable, BENCH, "--raw-relay", url, ",".join([*relayed, HUB])]
            children.append(await spawn(args, work / "raw-relay.log", "ready"))
            started = time.perf_counter()

            def done(d: dict[str, int]) -> bool:
                return sum(d[q] for q in drained) == 0 and sum(d[q] for q in receipts) >= n

            async def probe() -> dict[str, int]:
                return await depths(channel, watched)

            samples = await watch(probe, done, before, Memory(), "draining", started)
        return Result(drained, receipts, samples, fill_s)
    finally:
        for child in children:
            child.stop()
        await delete()


# --- report ------------------------------------------------------------------------------


def rates(values: Sequence[float]) -> str:
    return " / ".join(f"{x:.0f}" for x in values) + " msg/s"


def fairness(r: Result, n: int) -> list[tuple[str, str]]:
    """Each sender's queue: how fast it emptied, and how even the queues stayed meanwhile."""
    shares = dict(zip(r.drained, split(n, r.drained).values(), strict=True))
    emptied = {q: crossing(series(r.samples, [q]), 0) for q in r.drained}
    each = {q: shares[q] / max(emptied[q] - r.samples[0][0], 1e-3) for q in r.drained}
    total = series(r.samples, r.drained)
    half = crossing(total, n / 2)
    at_half = min(r.samples, key=lambda s: abs(s[0] - half))[1]
    left = [at_half[q] / shares[q] for q in r.drained]
    hub_peak = max(d[topology.ingress_queue(HUB)] for _, d in r.samples)
    agency = {q: q.rsplit(".", 1)[1] for q in r.drained}
    return [
        (
            "  each queue emptied after (s)",
            ", ".join(f"{agency[q]} {emptied[q]:.0f}" for q in r.drained),
        ),
        (
            "  each queue's rate, slowest / fastest",
            f"{min(each.values()):.0f} / {max(each.values()):.0f} msg/s"
            f" ({min(each.values()) / max(each.values()):.0%})",
        ),
        ("  left in each queue at half the backlog", f"{min(left):.0%} to {max(left):.0%}"),
        ("  receipts waiting in gateway.ingress.hub, max", f"{hub_peak}"),
    ]


def receipts_back(r: Result, n: int) -> float:
    """Seconds from the drainer's ready marker until all ``n`` receipts had come back."""
    return rising(series(r.samples, r.receipts), n)


def report(n: int, results: dict[str, tuple[Result, Result]]) -> None:
    rows: list[tuple[str, str]] = []
    labels = {"edge": "police edge down", "router": "router down"}
    for which, (r, raw) in results.items():
        drain, raw_drain = series(r.samples, r.drained), series(raw.samples, raw.drained)
        gateway_rate, raw_rate = overall(drain), overall(raw_drain)
        by_fifth, raw_by_fifth = fifths(drain, n), fifths(raw_drain, n)
        back, raw_back = receipts_back(r, n), receipts_back(raw, n)
        before, full = r.memory.peaks["before"], r.memory.peaks["full"]
        filling, draining = r.memory.peaks["filling"], r.memory.peaks["draining"]
        senders = len(r.drained) if which == "router" else EDGE_FILLERS
        rows += [
            (
                f"{labels[which]}: {n} built up by {senders} processes in",
                f"{r.fill_s:.0f} s ({n / r.fill_s:.0f} msg/s)",
            ),
            ("  drained, gateway / raw ceiling", f"{gateway_rate:.0f} / {raw_rate:.0f} msg/s"),
            ("    gateway / raw", f"{gateway_rate / raw_rate:.0%}"),
            ("  drain rate by fifth of the backlog, gateway", rates(by_fifth)),
            ("    the same, raw", rates(raw_by_fifth)),
            ("    last fifth / first fifth, gateway", f"{by_fifth[-1] / by_fifth[0]:.0%}"),
            ("    slowest fifth / fastest fifth, gateway", f"{min(by_fifth) / max(by_fifth):.0%}"),
            ("  every receipt back after, gateway / raw", f"{back:.0f} / {raw_back:.0f} s"),
        ]
        if which == "router":
            rows += fairness(r, n)
        router_mib = (
            f"{before[0]:.0f}; {filling[0]:.0f}; {full[0]:.0f}; {draining[0]:.0f} MiB"
            if which == "edge"
            else f"down; down; down; {draining[0]:.0f} MiB"
        )
        rows += [
            ("  router RSS: before; filling (max); full; draining (max)", router_mib),
            (
                "  broker node RSS (shared): before; filling (max); full; draining (max)",
                f"{before[1]:.0f}; {filling[1]:.0f}; {full[1]:.0f}; {draining[1]:.0f} MiB",
            ),
            (
                "  the backlog's queues' own memory, full (rabbitmqctl)",
                "n/a" if r.queue_mib is None else f"{r.queue_mib:.1f} MiB",
            ),
        ]
    print_table(rows)


async def bench(n: int, parts: Sequence[str]) -> None:
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    results: dict[str, tuple[Result, Result]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mash-bench-backlog-") as tmp:
        work = Path(tmp)
        for which in parts:
            print(f"running: {which} outage, gateway ...", flush=True)
            gateway = await gateway_outage(which, n, work)
            sizes = sealed_sizes(load_config(str(work / f"area-{which}" / "gateway.toml")))
            print(f"running: {which} outage, raw ...", flush=True)
            results[which] = (gateway, await raw_outage(which, n, sizes, work))
    report(n, results)
    took = time.perf_counter() - started
    scaled = sum(r.fill_s + receipts_back(r, n) for pair in results.values() for r in pair)
    estimate = took - scaled + scaled * 100_000 / n
    print(
        f"# took {took / 60:.1f} min; at this run's rates a backlog of 100,000 would take"
        f" about {estimate / 60:.0f} min (build-ups and drains scaled, start-ups not)"
    )


def main() -> None:
    bound = topology.Limits().inbox_max_length
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages", type=int, default=5_000, help=f"backlog size (at most {bound:,})"
    )
    parser.add_argument("--only", choices=("edge", "router"), help="run one outage only")
    parser.add_argument("--edge", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--sender", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--raw-drainer", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--raw-relay", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.edge:
        run_edge(*args.edge)
        return
    if args.sender:
        agency, config, db, count = args.sender
        run_sender(agency, config, db, int(count))
        return
    if args.raw_drainer:
        url, agency, size = args.raw_drainer
        raw_drainer(url, agency, int(size))
        return
    if args.raw_relay:
        raw_relay(*args.raw_relay)
        return
    if not 0 < args.messages <= bound:
        raise SystemExit(
            f"--messages must be between 1 and {bound:,}: the agency inbox's bound"
            " (topology.Limits.inbox_max_length), which a larger edge outage would overflow"
        )
    logs.configure(json=True, quiet=True)
    print(
        f"# backlog benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()}"
        f" cores, load average {os.getloadavg()[0]:.1f}, backlog {args.messages:,}"
    )
    parts = [args.only] if args.only else ["edge", "router"]
    try:
        asyncio.run(bench(args.messages, parts))
    except asyncio.CancelledError:
        raise SystemExit("interrupted; the processes and the vhosts are cleaned up") from None


if __name__ == "__main__":
    main()
