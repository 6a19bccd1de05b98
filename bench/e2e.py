"""End-to-end exchange benchmark: the gateway beside bare aio-pika doing the same broker hops.

Run: .venv/bin/python bench/e2e.py [--quick] [--profile FILE]
     .venv/bin/python bench/e2e.py --observability [--quick]

On the local RabbitMQ (127.0.0.1:5672, guest/guest), each part in a fresh
vhost that is deleted afterwards, it prints from one run (ratios matter more
than absolute times on shared machines):
- raw: a bare aio-pika loop with the gateway's topology (the same quorum
  queues, declared by gateway.broker.topology), persistent messages,
  publisher confirms, mandatory routing and manual acks, moving random bytes
  of the sealed request and receipt sizes over the same 4 hops:
  hub → gateway.ingress.hub → relay → agency.police.inbox → police → receipt →
  gateway.ingress.police → relay → agency.hub.inbox → hub. The relay runs in its own
  process and handles one message at a time, like the router;
- e2e: the same hops through the product: the hub Edge submits the
  InformationRequest example to police, the router runs as
  ``python -m gateway --config AREA run`` in its own process (the deployed
  shape; it uses the second core), the police Edge opens it, checks the
  schema, hands it over and sends a signed receipt, which the router verifies,
  records and forwards to the hub Edge;
- throughput: N messages (20,000; 2,000 with --quick) with at most 500 in
  flight. A message is done when its receipt reaches the hub's handler; the
  run ends when all are done and the router's store shows every one
  delivered. Target: at least 50% of raw;
- latency at an offered load of 100 msg/s (3,000 messages; 500 with
  --quick), submitted on a fixed schedule, not waiting for each other:
  p50/p99 from the start of submit to the receipt at the hub's handler
  (target p99 <= 50 ms), and, from the router's own timestamps, from the
  header's created_at to the delivered transition.

``--observability`` measures only e2e, six times in one run, mirrored so
drift cancels: off, metrics+logs, on, on, metrics+logs, off. "on" is the
deployed router (audit trail, JSON logs at info, /metrics, queue polling)
and edges that log JSON at info and serve /metrics, both scraped every
second; "metrics+logs" is the same with the router's audit switched off;
"off" also makes every metrics call a no-op and logs warnings only. It
prints the throughput lost to each (target: all on loses <= 15%).

Each request opens its own case (correlation id), so a router that orders
per case may work on several at once. The edges run in this process with
their own SQLite stores and log warnings only; the router logs at info to
a file, as deployed. ``--profile FILE`` runs the router under cProfile and
prints its top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import pstats
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
    nullcontext,
    suppress,
)
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from gateway.broker import topology
from gateway.broker.vhost import admin_for, vhost_url
from gateway.cli import main as cli_main
from gateway.config.area_config import AreaConfig, load_config
from gateway.config.metrics_config import Listen
from gateway.core import notices
from gateway.core.envelope import HeaderFields, RecipientKey, seal_bytes
from gateway.core.lifecycle import State
from gateway.core.vocabulary import SYSTEM_PURPOSE
from gateway.infra import keystore, logs
from gateway.infra.clock import utc_now
from gateway.services import metrics, metrics_server, queue_depths
from gateway.services import router as router_module
from gateway.services.edge import Delivered, Edge, Submission
from gateway.store import store_from_url
from gateway.store.sqlite import SqliteStore, from_text

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "amqp://guest:guest@127.0.0.1:5672/"
REQUEST = (ROOT / "schemas" / "examples" / "valid" / "information-request.xml").read_bytes()
SENDER, RECIPIENT = "hub", "police"
PREFETCH = 32  # the Edge's and the router's default
SUBMITTERS = 64  # concurrent submit calls in the throughput run
IN_FLIGHT = 500  # submitted but not yet receipted, in the throughput run
WARM_UP = 200
RATE = 100.0  # msg/s offered in the latency run
READY_TIMEOUT_S = 30


@dataclass
class Tracker:
    """Submit and receipt times of one phase, keyed by the original message id."""

    expected: int
    window: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))
    sent: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def arrive(self, original_id: str) -> None:
        if original_id in self.arrived:
            return  # a redelivered receipt
        self.arrived[original_id] = time.perf_counter()
        self.window.release()
        if len(self.arrived) == self.expected:
            self.done.set()

    def latencies_ms(self) -> list[float]:
        return sorted((self.arrived[i] - t) * 1000 for i, t in self.sent.items())


Submit = Callable[[str], Awaitable[str]]  # phase -> message id


@dataclass
class Phases:
    """Routes each receipt to the tracker of the phase running now."""

    current: Tracker = field(default_factory=lambda: Tracker(0))

    def start(self, expected: int) -> Tracker:
        self.current = Tracker(expected)
        return self.current


async def wait_done(tracker: Tracker, what: str) -> None:
    timeout = 60 + tracker.expected / 20
    try:
        await asyncio.wait_for(tracker.done.wait(), timeout)
    except TimeoutError:
        raise SystemExit(
            f"{what}: only {len(tracker.arrived)} of {tracker.expected} receipts within "
            f"{timeout:.0f} s; see the router log"
        ) from None


async def closed_loop(submit: Submit, phases: Phases, n: int, phase: str) -> float:
    """Submit ``n`` as fast as the exchange takes them; seconds until all are receipted."""
    tracker = phases.start(n)
    remaining = iter(range(n))

    async def submitter() -> None:
        for _ in remaining:
            await tracker.window.acquire()
            started = time.perf_counter()
            tracker.sent[await submit(phase)] = started

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    await wait_done(tracker, phase)
    return time.perf_counter() - started


async def paced(
    submit: Submit, phases: Phases, n: int, phase: str, rate: float = RATE
) -> list[float]:
    """Submit ``n`` at ``rate`` msg/s on a fixed schedule; the latencies in ms, sorted."""
    tracker = phases.start(n)

    async def one() -> None:
        started = time.perf_counter()
        tracker.sent[await submit(phase)] = started

    tasks = []
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    await wait_done(tracker, phase)
    return tracker.latencies_ms()


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


# --- sizes -----------------------------------------------------------------------------


def sealed_sizes(config: AreaConfig) -> tuple[int, int]:
    """Bytes on the wire of a sealed request and of its receipt, sealed as the Edge does."""
    now = utc_now()

    def sealed(sender: str, recipient: str, fields: HeaderFields, payload: bytes) -> int:
        signer = keystore.load_signing_identity(config, sender, now)
        key_id, public = config.registry.encryption_key(recipient, now)
        return len(seal_bytes(fields, payload, signer, [RecipientKey(recipient, key_id, public)]))

    request_id = str(uuid.uuid4())
    request = HeaderFields(
        message_id=request_id,
        correlation_id=str(uuid.uuid4()),
        message_type="InformationRequest",
        sender=SENDER,
        recipients=(RECIPIENT,),
        created_at=now,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-9-2-g-dpa-sch1-18", "ca-2004-s11"),
        rag="Amber",
        deadline=now,
    )
    receipt = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=request.correlation_id,
        message_type="DeliveryReceipt",
        sender=RECIPIENT,
        recipients=(SENDER,),
        created_at=now,
        purpose=SYSTEM_PURPOSE,
        lawful_bases=("uk-gdpr-6-1-e",),
        in_reply_to=request_id,
        receipt_outcome="positive",
    )
    digest = "0" * 64
    return (
        sealed(SENDER, RECIPIENT, request, REQUEST),
        sealed(
            RECIPIENT,
            SENDER,
            receipt,
            notices.positive_receipt(request_id, RECIPIENT, now, digest, digest, now),
        ),
    )


# --- raw: bare aio-pika over the same topology -------------------------------------------


async def relay(url: str, serial: bool) -> None:
    """The raw stand-in for the router: publish confirmed, then ack.

    ``serial`` handles one message at a time in queue order, as the router does;
    otherwise up to PREFETCH at once, the transport's own ceiling.
    """
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        deliver = await channel.get_exchange(topology.DELIVER_EXCHANGE)
        queues = [await channel.get_queue(topology.ingress_queue(a)) for a in (SENDER, RECIPIENT)]
        lock: AbstractAsyncContextManager[object] = asyncio.Lock() if serial else nullcontext()

        async def on_message(message: AbstractIncomingMessage) -> None:
            async with lock, message.process(requeue=True):
                to = RECIPIENT if message.type == "request" else SENDER
                await deliver.publish(forward(message.body, message.type, message.message_id), to)

        for queue in queues:
            await queue.consume(on_message)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()


def forward(body: bytes, kind: str | None, message_id: str | None) -> aio_pika.Message:
    return aio_pika.Message(
        body, delivery_mode=DeliveryMode.PERSISTENT, type=kind, message_id=message_id
    )


@dataclass
class RawEdges:
    """Hub and police ends of the raw loop: police answers each request with a receipt."""

    url: str
    request_size: int
    receipt_size: int
    phases: Phases
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    ingress: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url)
        channels = []
        for _ in (SENDER, RECIPIENT):  # one channel per edge, as each Edge has its own
            channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.set_qos(prefetch_count=PREFETCH)
            channels.append(channel)
        hub, police = channels
        self.ingress = await hub.get_exchange(topology.ingress_exchange(SENDER))
        police_ingress = await police.get_exchange(topology.ingress_exchange(RECIPIENT))
        receipt_body = os.urandom(self.receipt_size)

        async def at_police(message: AbstractIncomingMessage) -> None:
            receipt = forward(receipt_body, "receipt", message.message_id)
            await police_ingress.publish(receipt, topology.INGRESS_ROUTING_KEY, mandatory=True)
            await message.ack()

        async def at_hub(message: AbstractIncomingMessage) -> None:
            self.phases.current.arrive(str(message.message_id))
            await message.ack()

        await (await police.get_queue(topology.inbox_queue(RECIPIENT))).consume(at_police)
        await (await hub.get_queue(topology.inbox_queue(SENDER))).consume(at_hub)

    async def submit(self, phase: str) -> str:
        assert self.ingress is not None
        message_id = str(uuid.uuid4())
        message = forward(os.urandom(self.request_size), "request", message_id)
        await self.ingress.publish(message, topology.INGRESS_ROUTING_KEY, mandatory=True)
        return message_id

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


# --- processes and vhosts ------------------------------------------------------------------


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise SystemExit(f"{self.process.args!r} did not stop within 30 s on SIGTERM") from None


async def spawn(args: list[str], log: Path, ready_marker: str) -> Child:
    """Start ``args`` with output to ``log``; return once ``ready_marker`` shows in it."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while ready_marker not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"{' '.join(args)} did not start:\n{log.read_text()[-2000:]}")
        await asyncio.sleep(0.05)
    return Child(process, log)


async def fresh_vhost(label: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    admin = await admin_for(BASE_URL)
    vhost = f"mash-bench-{label}-{uuid.uuid4().hex[:8]}"
    await admin.create_vhost(vhost, "guest")
    return vhost_url(BASE_URL, vhost), lambda: admin.delete_vhost(vhost)


@dataclass
class Run:
    messages: int
    paced: int
    profile: Path | None
    results: dict[str, float] = field(default_factory=dict)


async def run_raw(run: Run, request_size: int, receipt_size: int, mode: str) -> None:
    """``mode`` is "serial" (the router's shape) or "concurrent" (the relay's own ceiling)."""
    url, delete = await fresh_vhost(f"raw-{mode}")
    edges: RawEdges | None = None
    child: Child | None = None
    try:
        connection = await aio_pika.connect_robust(url)
        async with connection:
            await topology.declare(
                await connection.channel(), [SENDER, RECIPIENT], topology.Limits()
            )
        with tempfile.TemporaryDirectory(prefix="mash-bench-raw-") as tmp:
            child = await spawn(
                [sys.executable, __file__, "--relay", mode, url], Path(tmp, "relay.log"), "ready"
            )
            phases = Phases()
            edges = RawEdges(url, request_size, receipt_size, phases)
            await edges.start()
            await closed_loop(edges.submit, phases, WARM_UP, "warmup")
            seconds = await closed_loop(edges.submit, phases, run.messages, "rate")
            latencies = await paced(edges.submit, phases, run.paced, "paced")
            child.stop()
            child = None
    finally:
        if child is not None:
            child.stop()
        if edges is not None:
            await edges.close()
        await delete()
    run.results |= {
        f"{mode}_rate": run.messages / seconds,
        f"{mode}_p50": percentile(latencies, 50),
        f"{mode}_p99": percentile(latencies, 99),
    }


# --- e2e: the product ------------------------------------------------------------------------


def store_delivered(db: Path, phase: str) -> list[tuple[str, str]]:
    """(created_at, delivered at) of the phase's requests the router has recorded delivered."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT m.created_at, t.at FROM messages m JOIN transitions t"
            " ON t.message_id = m.message_id"
            " WHERE m.correlation_id LIKE ? AND m.message_type = 'InformationRequest'"
            " AND t.state = ?",
            (f"{phase}/%", State.DELIVERED.value),
        ).fetchall()


async def all_delivered(db: Path, phase: str, n: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 30
    while len(rows := store_delivered(db, phase)) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"{phase}: the router recorded {len(rows)} of {n} delivered")
        await asyncio.sleep(0.02)
    return rows


async def run_e2e(run: Run, area: Path, variant: str = "plain", label: str = "e2e") -> None:
    """``variant``: "plain" (as deployed), or --observability's "on", "noaudit" or "off"."""
    url, delete = await fresh_vhost("e2e")
    assert cli_main(["init", str(area), "--broker-url", url]) == 0
    config_path = area / "gateway.toml"
    config = load_config(str(config_path))
    db = Path(config.store_url.removeprefix("sqlite:///"))
    phases = Phases()
    edges: list[Edge] = []
    child: Child | None = None
    router = [sys.executable, "-m", "gateway", "--config", str(config_path), "run", "--json-logs"]
    if run.profile is not None:
        router[1:3] = ["-m", "cProfile", "-o", str(run.profile), "-m", "gateway"]
    router_port = free_port()
    if variant == "on":
        router += ["--metrics-listen", f"127.0.0.1:{router_port}"]
    elif variant in ("off", "noaudit"):
        router = [sys.executable, __file__, "--router-bench", variant, str(config_path)]
        router.append(str(router_port))
    observed = AsyncExitStack()
    try:
        child = await spawn(router, area / "router.log", "router.started")
        await observed.enter_async_context(observing(variant, area, router_port))
        for agency in (SENDER, RECIPIENT):
            store = SqliteStore(str(area / f"edge-{agency}.db"))
            await store.open()
            edge = Edge(config, agency, store)
            await edge.__aenter__()
            edges.append(edge)
        hub, police = edges

        async def at_hub(delivered: Delivered) -> None:
            original = delivered.header.fields.in_reply_to
            if original is not None:
                phases.current.arrive(original)

        async def at_police(delivered: Delivered) -> None:
            return None  # the agency system takes it

        await hub.consume(at_hub)
        await police.consume(at_police)

        async def submit(phase: str) -> str:
            case = f"{phase}/{uuid.uuid4()}"  # each request opens its own case
            sent = await hub.submit(Submission(REQUEST, (RECIPIENT,), correlation_id=case))
            return sent.message_id

        await closed_loop(submit, phases, WARM_UP, "warmup")
        await all_delivered(db, "warmup", WARM_UP)
        started = time.perf_counter()
        router_started, edges_started = cpu_seconds(child.process.pid), time.process_time()
        await closed_loop(submit, phases, run.messages, "rate")
        await all_delivered(db, "rate", run.messages)
        seconds = time.perf_counter() - started
        router_cpu = cpu_seconds(child.process.pid) - router_started
        edges_cpu = time.process_time() - edges_started
        latencies = await paced(submit, phases, run.paced, "paced")
        recorded = sorted(
            (from_text(at) - from_text(created)).total_seconds() * 1000
            for created, at in await all_delivered(db, "paced", run.paced)
        )
    finally:
        for edge in edges:
            await edge.__aexit__(None, None, None)
            await edge.store.close()
        await observed.aclose()
        if child is not None:
            child.stop()
        await delete()
    run.results |= {
        f"{label}_rate": run.messages / seconds,
        f"{label}_cpu_ms": (router_cpu + edges_cpu) / run.messages * 1000,
        f"{label}_router_cpu_ms": router_cpu / run.messages * 1000,
        f"{label}_edges_cpu_ms": edges_cpu / run.messages * 1000,
        f"{label}_p50": percentile(latencies, 50),
        f"{label}_p99": percentile(latencies, 99),
        f"{label}_store_p50": percentile(recorded, 50),
        f"{label}_store_p99": percentile(recorded, 99),
    }


def report(run: Run, request_size: int, receipt_size: int) -> None:
    r = run.results
    n = run.messages

    def latency(key: str) -> str:
        return f"{r[key + '_p50']:.1f} / {r[key + '_p99']:.1f} ms"

    rows = [
        ("sealed request / receipt size", f"{request_size} / {receipt_size} B"),
        (f"raw, relay one at a time, {n} with receipts", f"{r['serial_rate']:.0f} msg/s"),
        (
            f"raw, relay {PREFETCH} at a time, {n} with receipts",
            f"{r['concurrent_rate']:.0f} msg/s",
        ),
        (f"e2e, router process, {n} with receipts", f"{r['e2e_rate']:.0f} msg/s"),
        ("  e2e / raw one at a time", f"{r['e2e_rate'] / r['serial_rate']:.0%}"),
        (
            f"  e2e / raw {PREFETCH} at a time (target >= 50%)",
            f"{r['e2e_rate'] / r['concurrent_rate']:.0%}",
        ),
        (
            "  CPU per message: router; both edges (bench process)",
            f"{r['e2e_router_cpu_ms']:.2f}; {r['e2e_edges_cpu_ms']:.2f} ms",
        ),
        (f"raw one at a time, p50 / p99 at {RATE:.0f} msg/s", latency("serial")),
        (f"raw {PREFETCH} at a time, p50 / p99 at {RATE:.0f} msg/s", latency("concurrent")),
        (f"e2e p50 / p99 at {RATE:.0f} msg/s (target p99 <= 50)", latency("e2e")),
        ("  router's created_at to delivered, p50 / p99", latency("e2e_store")),
    ]
    rows.append(("load average at the end (1, 5, 15 min)", " / ".join(load_average())))
    print_table(rows)
    if run.profile is not None:
        print(f"\n# router profile ({run.profile}), top 25 by own time")
        pstats.Stats(str(run.profile)).sort_stats("tottime").print_stats(25)


# --- observability on versus off ---------------------------------------------------------

SILENCED = ("submitted", "routed", "receipted", "rejected", "refused_at_edge")
SCRAPE_EVERY_S = 1.0  # Prometheus scrapes every 15 s; this is fifteen times harsher


def load_average() -> list[str]:
    """The machine's load (other people's jobs on a shared box change every figure)."""
    return Path("/proc/loadavg").read_text().split()[:3]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_table(rows: list[tuple[str, str]]) -> None:
    """The figures as the Markdown table bench/README.md quotes."""
    width = max(len(what) for what, _ in rows)
    print(f"| {'What':<{width}} | Measured |")
    print(f"|{'-' * (width + 2)}|----------|")
    for what, value in rows:
        print(f"| {what:<{width}} | {value} |")


def free_port() -> int:
    """A port free now on loopback (another process may take it before it is bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def metrics_silenced() -> Iterator[None]:
    """Every metrics call of the router and the edges becomes a no-op: the "off" baseline."""
    saved = {name: getattr(metrics, name) for name in (*SILENCED, "timed")}
    for name in SILENCED:
        setattr(metrics, name, lambda *args, **kwargs: None)
    metrics.timed = lambda operation: nullcontext()  # type: ignore[assignment,return-value]
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(metrics, name, function)


async def scrape_every_second(ports: list[int], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            for port in ports:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    assert response.status == 200
                    await response.read()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCRAPE_EVERY_S)


@asynccontextmanager
async def observing(variant: str, area: Path, router_port: int) -> AsyncIterator[None]:
    """The bench process (both edges) as ``variant`` runs it.

    "on": the edges log at info as JSON (to a file), serve their own metrics,
    and both they and the router are scraped every second; "off": metrics
    calls are no-ops and only warnings are logged; "plain": as configured.
    """
    if variant == "off":
        with metrics_silenced():
            yield
        return
    if variant not in ("on", "noaudit"):
        yield
        return
    with (area / "edges.log").open("w") as sink:
        real, sys.stderr = sys.stderr, sink
        try:
            logs.configure(json=True)
        finally:
            sys.stderr = real
        stop = asyncio.Event()
        try:
            async with metrics_server.serving(Listen("127.0.0.1", 0)) as edge_port:
                assert edge_port is not None
                scraper = asyncio.create_task(scrape_every_second([router_port, edge_port], stop))
                try:
                    yield
                finally:
                    stop.set()
                    await scraper
        finally:
            logs.configure(json=True, quiet=True)


def router_without_audit(mode: str, config_path: str, port: int) -> None:
    """The router with its audit trail switched off; "off": no metrics and warnings only too,
    "noaudit": metrics served and queues polled, JSON logs at info, as deployed."""
    assert hasattr(router_module.Router, "_audit"), "the router no longer audits via _audit"

    async def no_audit(*args: object) -> None:
        return None

    router_module.Router._audit = no_audit  # type: ignore[method-assign,assignment]
    logs.configure(json=True, quiet=mode == "off")

    async def serve() -> None:
        config = load_config(config_path)
        store = store_from_url(config.store_url)
        await store.open()
        stop, ready = asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        observed = AsyncExitStack()
        if mode == "noaudit":
            await observed.enter_async_context(metrics_server.serving(Listen("127.0.0.1", port)))
            await observed.enter_async_context(
                queue_depths.watching(config.broker_url, config.inbox_agencies)
            )
        async with observed:
            routing = asyncio.create_task(router_module.run_router(config, store, stop, ready))
            await ready.wait()
            print("router.started", flush=True)
            await routing
        await store.close()

    with metrics_silenced() if mode == "off" else nullcontext():
        asyncio.run(serve())


OBSERVABILITY_RUNS = (
    ("off1", "off"),
    ("noaudit1", "noaudit"),
    ("on1", "on"),
    ("on2", "on"),
    ("noaudit2", "noaudit"),
    ("off2", "off"),
)


async def bench_observability(run: Run) -> None:
    """Off, without audit, on, on, without audit, off: mirrored, so drift on the machine cancels."""
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    for label, variant in OBSERVABILITY_RUNS:
        with tempfile.TemporaryDirectory(prefix="mash-bench-obs-") as tmp:
            await run_e2e(run, Path(tmp, "area"), variant, label)
    r = run.results
    rows = [
        (
            f"{variant} ({label}), {run.messages} with receipts: rate; CPU per message",
            f"{r[label + '_rate']:.0f} msg/s; {r[label + '_cpu_ms']:.2f} ms",
        )
        for label, variant in OBSERVABILITY_RUNS
    ]

    def mean(variant: str, key: str) -> float:
        return (r[f"{variant}1_{key}"] + r[f"{variant}2_{key}"]) / 2

    off, noaudit, on = (mean(v, "rate") for v in ("off", "noaudit", "on"))
    cpu_off, cpu_noaudit, cpu_on = (mean(v, "cpu_ms") for v in ("off", "noaudit", "on"))
    rows += [
        ("throughput off / metrics+logs / all on (means)", f"{off:.0f} / {noaudit:.0f} / {on:.0f}"),
        ("  lost to metrics and logs", f"{1 - noaudit / off:.1%}"),
        ("  lost to metrics, logs and audit (target <= 15%)", f"{1 - on / off:.1%}"),
        (
            "router + edges CPU per message, off / metrics+logs / all on",
            f"{cpu_off:.2f} / {cpu_noaudit:.2f} / {cpu_on:.2f} ms",
        ),
        ("  CPU-bound loss, metrics and logs", f"{1 - cpu_off / cpu_noaudit:.1%}"),
        ("  CPU-bound loss, metrics, logs and audit", f"{1 - cpu_off / cpu_on:.1%}"),
        (
            "p99 off / metrics+logs / all on (means)",
            " / ".join(f"{mean(v, 'p99'):.1f}" for v in ("off", "noaudit", "on")) + " ms",
        ),
    ]
    print_table(rows)


async def bench(run: Run) -> None:
    """Every part; SIGTERM or SIGINT cancels it, so its subprocess and vhosts are cleaned up."""
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    with tempfile.TemporaryDirectory(prefix="mash-bench-e2e-") as tmp:
        area = Path(tmp, "area")
        await run_e2e(run, area)
        request_size, receipt_size = sealed_sizes(load_config(str(area / "gateway.toml")))
    for mode in ("serial", "concurrent"):
        await run_raw(run, request_size, receipt_size, mode)
    report(run, request_size, receipt_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 500 paced")
    parser.add_argument("--profile", type=Path, help="run the router under cProfile into FILE")
    parser.add_argument(
        "--observability",
        action="store_true",
        help="only e2e, with metrics, JSON logs and audit on and off, 6 runs of 5,000 messages",
    )
    parser.add_argument("--relay", nargs=2, metavar=("MODE", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--router-bench", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        mode, url = args.relay
        asyncio.run(relay(url, serial=mode == "serial"))
        return
    if args.router_bench:
        mode, config_path, port = args.router_bench
        router_without_audit(mode, config_path, int(port))
        return
    logs.configure(json=True, quiet=True)
    if args.observability:
        run = Run(1_000 if args.quick else 5_000, 300 if args.quick else 1_000, profile=None)
    else:
        run = Run(
            messages=2_000 if args.quick else 20_000,
            paced=500 if args.quick else 3_000,
            profile=args.profile.resolve() if args.profile else None,
        )
    print(f"# end-to-end exchange benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, router in its own process"
    )
    try:
        asyncio.run(bench_observability(run) if args.observability else bench(run))
    except asyncio.CancelledError:
        raise SystemExit("interrupted; the router and the vhosts are cleaned up") from None


if __name__ == "__main__":
    main()
