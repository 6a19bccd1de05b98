"""Scale benchmark: routers on PostgreSQL over a three-node RabbitMQ cluster, beside its ceiling.

Run: .venv/bin/python bench/scale.py [--quick] [--messages N] [--backlog N]
     (as root: it starts its own three-node cluster, tests/fault/rabbit_cluster.py)

It forms a fresh three-node cluster of the machine's RabbitMQ package (its
own node names, ports and folders; the machine's RabbitMQ on 5672 is not
used) and destroys it at the end. Each scenario gets a fresh vhost on the
cluster and a fresh schema in PostgreSQL (``MASH_BENCH_PG_URL``, default
postgresql://postgres@127.0.0.1:5432/test), both dropped afterwards. Clients
connect to the nodes directly, router i to node i, the edges to the first
node: the spread a load balancer gives, without a proxy's CPU on the box.

Scenarios, each beside the raw ceiling of the same cluster measured in the
same run (bench/e2e.py's bare aio-pika hops: hub -> gateway.ingress.hub -> relay
-> police inbox -> police -> receipt -> gateway.ingress.police -> relay -> hub inbox,
confirmed, persistent, manually acked, the gateway's own quorum queues; one
relay process per router, each taking 32 at a time, on the router's node):
- **routers**: 1, 2 and 3 router processes (``python -m gateway --config AREA
  run``, each its own audit chain) sharing one PostgreSQL store. The hub
  Edge submits the InformationRequest example to police, at most 500 in
  flight; police's Edge opens it and receipts it; done when every receipt is
  at the hub and the store shows every request delivered;
- **agencies**: one router, the area holding 7 (the demo area), 50 and 200
  agencies, each extra one with its own signing and encryption keys, inbox
  (a quorum queue on the cluster) and agreements with the hub. The traffic
  is still hub -> police; the raw ceiling declares the same inboxes;
- **backlog**: one router; N requests (default 20,000, the most one agency's
  ingress holds, so the issue's 100,000 from the hub alone no longer fit)
  are submitted while it is stopped, so they wait in the hub's ingress
  queue, ``gateway.ingress.hub``; then it starts and drains them with the
  police Edge receipting. The ceiling: a raw relay draining the same number
  from the same queue. bench/backlog.py measures the drain curve and memory;
  this gives the router's CPU per message while its queue holds a backlog.

Per scenario it prints throughput, CPU time per message (from /proc) of the
router processes, of the PostgreSQL server processes serving them (found by
their application_name) and of the bench process (both edges), and the load
average: the machine is shared, so ratios to the same run's ceiling and CPU
per message mean more than rates.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
import asyncpg  # type: ignore[import-untyped]

from bench import e2e
from bench.e2e import (
    RECIPIENT,
    REQUEST,
    SENDER,
    WARM_UP,
    Child,
    Phases,
    RawEdges,
    Tracker,
    closed_loop,
    cpu_seconds,
    sealed_sizes,
    spawn,
)
from gateway.broker import topology
from gateway.broker.vhost import vhost_url
from gateway.cli import main as cli_main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.lifecycle import State
from gateway.core.registry import KeyUse
from gateway.demo.area import _agreement
from gateway.infra import keystore, logs
from gateway.infra.clock import utc_now
from gateway.services.edge import Delivered, Edge, Submission
from gateway.store.sqlite import SqliteStore
from tests.fault.rabbit_cluster import Cluster, ctl

PG_URL = os.environ.get("MASH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEMO_AGENCIES = 7  # the demo area's agencies, the gateway not counted
SUBMITTERS = 64
MACHINE_ENV = "/etc/rabbitmq/rabbitmq-env.conf"
CONNECT_TIMEOUT_S = 120
RELAY = [sys.executable, e2e.__file__, "--relay", "concurrent"]


# --- the cluster, the vhosts and the schemas ------------------------------------------------


@dataclass
class Broker:
    cluster: Cluster

    def url(self, vhost: str, node: int) -> str:
        port = self.cluster.nodes[node % len(self.cluster.nodes)].amqp_port
        return vhost_url(f"amqp://guest:guest@127.0.0.1:{port}/", vhost)

    @asynccontextmanager
    async def vhost(self, label: str) -> AsyncIterator[str]:
        vhost = f"mash-scale-{label}-{uuid.uuid4().hex[:8]}"
        first = self.cluster.nodes[0]
        await asyncio.to_thread(ctl, first, "add_vhost", vhost)
        await asyncio.to_thread(
            ctl, first, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
        )
        try:
            yield vhost
        finally:
            await asyncio.to_thread(ctl, first, "delete_vhost", vhost)


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A store URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"mash_scale_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{PG_URL}?search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


# --- the area -----------------------------------------------------------------------------


def extra_agencies(total: int) -> tuple[str, ...]:
    return tuple(f"scale-{n:03d}" for n in range(total - DEMO_AGENCIES))


def make_area(area: Path, broker_url: str, store_url: str, agencies: int) -> Path:
    """``mash-gateway init``'s demo area on ``store_url``, grown to ``agencies`` agencies the way
    init makes its own: a key pair each (keys/private, 0600) and agreements with the hub."""
    with redirect_stdout(io.StringIO()):  # init's notes about the demo's intake keys
        assert cli_main(["init", str(area), "--broker-url", broker_url]) == 0
    config_path = area / "gateway.toml"
    text = config_path.read_text()
    sqlite_store = 'url = "sqlite:///state/gateway.db"'
    assert sqlite_store in text, "init no longer writes the SQLite store this bench replaces"
    blocks = [text.replace(sqlite_store, f'url = "{store_url}"')]
    extras = extra_agencies(agencies)
    now = utc_now().replace(microsecond=0)
    for agency in extras:
        blocks.append(
            f'\n[[agencies]]\nid = "{agency}"\nname = "Scale partner {agency}"\n'
            f'kind = "police"\ncontacts = ["mash@{agency}.scale.example"]\n'
        )
        for use in (KeyUse.SIGN, KeyUse.ENCRYPT):
            new = keystore.generate(area / "keys" / "private", agency, use, now)
            blocks.append(keystore.key_block(new.record))
    if extras:
        to_hub = ("Referral", "InformationResponse")
        blocks.append(_agreement("isa-scale-to-hub", extras, ("hub",), to_hub, now.date()))
        from_hub = ("InformationRequest", "Decision")
        blocks.append(_agreement("isa-scale-from-hub", ("hub",), extras, from_hub, now.date()))
    config_path.write_text("".join(blocks))
    return config_path


def router_config(config_path: Path, router: int, url: str) -> Path:
    """A copy of the area's config, in the same folder, whose broker URL is router ``router``'s
    node."""
    config = load_config(str(config_path))
    text = config_path.read_text().replace(f'url = "{config.broker_url}"', f'url = "{url}"')
    copy = config_path.with_name(f"gateway-r{router}.toml")
    copy.write_text(text)
    return copy


async def start_router(config_path: Path, router: int) -> Child:
    area = config_path.parent
    audit = area / "state" / f"audit-r{router}.jsonl"
    args = [sys.executable, "-m", "gateway", "--config", str(config_path), "run", "--json-logs"]
    return await spawn([*args, "--audit-log", str(audit)], area / f"router-{router}.log", "started")


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Figure:
    what: str
    rate: float  # msg/s, with receipts
    ceiling: float  # raw msg/s, same hops, same cluster, same run
    router_cpu_ms: float  # all router processes, per message
    store_cpu_ms: float  # the PostgreSQL backends serving the routers, per message
    bench_cpu_ms: float  # both edges, per message
    load: tuple[float, float]  # 1-minute load average at start and end


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


async def store_backends(store_url: str) -> list[int]:
    """The PostgreSQL server processes serving the routers (their application_name)."""
    db = await asyncpg.connect(PG_URL)
    try:
        rows = await db.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application(store_url)
        )
    finally:
        await db.close()
    return [row["pid"] for row in rows]


def application(store_url: str) -> str:
    return store_url.rpartition("search_path=")[2]  # the schema names the routers' sessions


@dataclass
class Meter:
    """CPU of the routers, their store backends and this process; wall time; load average."""

    routers: list[int]
    store_url: str
    started: float = 0.0
    load: float = 0.0
    cpu: dict[int, float] = field(default_factory=dict)
    store: dict[int, float] = field(default_factory=dict)
    own: float = 0.0

    async def start(self) -> Meter:
        self.store = cpu_of(await store_backends(self.store_url))
        self.cpu = cpu_of(self.routers)
        self.started, self.own = time.perf_counter(), time.process_time()
        self.load = os.getloadavg()[0]
        return self

    async def read(self, what: str, messages: int) -> Figure:
        """The figure since start; its ceiling is measured afterwards."""
        seconds = time.perf_counter() - self.started
        own = time.process_time() - self.own
        cpu = sum(now - self.cpu[pid] for pid, now in cpu_of(self.routers).items())
        # A backend the pool opened during the run counts from zero.
        backends = cpu_of(await store_backends(self.store_url))
        store = sum(now - self.store.get(pid, 0.0) for pid, now in backends.items())
        return Figure(
            what,
            messages / seconds,
            0.0,
            cpu / messages * 1000,
            store / messages * 1000,
            own / messages * 1000,
            (self.load, os.getloadavg()[0]),
        )


async def delivered(store_url: str, phase: str, n: int) -> None:
    """Wait until the store records every request of ``phase`` delivered."""
    db = await asyncpg.connect(store_url)
    deadline = time.monotonic() + 120
    try:
        while True:
            count = await db.fetchval(
                "SELECT COUNT(*) FROM messages m JOIN transitions t USING (message_id)"
                " WHERE m.correlation_id LIKE $1 AND m.message_type = 'InformationRequest'"
                " AND t.state = $2",
                f"{phase}/%",
                State.DELIVERED.value,
            )
            if count >= n:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{phase}: the store records {count} of {n} delivered")
            await asyncio.sleep(0.1)
    finally:
        await db.close()


async def within(step: Awaitable[None], what: str) -> None:
    """A connection the broker never answers would otherwise wait for ever."""
    try:
        await asyncio.wait_for(step, CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise SystemExit(f"{what}: no answer from the cluster in {CONNECT_TIMEOUT_S} s") from None


async def submit_only(submit: Callable[[str], Awaitable[str]], n: int, phase: str) -> None:
    """Submit ``n`` with SUBMITTERS at a time, waiting for nothing but the broker's confirm."""
    remaining = iter(range(n))

    async def submitter() -> None:
        for _ in remaining:
            await submit(phase)

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))


async def wait_receipts(tracker: Tracker, what: str) -> None:
    timeout = 300 + tracker.expected / 5
    try:
        await asyncio.wait_for(tracker.done.wait(), timeout)
    except TimeoutError:
        raise SystemExit(
            f"{what}: {len(tracker.arrived)} of {tracker.expected} receipts in {timeout:.0f} s"
        ) from None


# --- the product -------------------------------------------------------------------------------


@dataclass
class Exchange:
    """An area on the cluster and on PostgreSQL; the hub and police Edges in this process."""

    config_path: Path
    config: AreaConfig
    store_url: str
    phases: Phases = field(default_factory=Phases)
    hub: Edge | None = None

    async def submit(self, phase: str) -> str:
        assert self.hub is not None
        case = f"{phase}/{uuid.uuid4()}"  # each request opens its own case
        sent = await self.hub.submit(Submission(REQUEST, (RECIPIENT,), correlation_id=case))
        return sent.message_id

    async def open_edges(self, stack: AsyncExitStack) -> None:
        edges = []
        for agency in (SENDER, RECIPIENT):
            store = SqliteStore(str(self.config_path.parent / f"edge-{agency}.db"))
            await store.open()
            stack.push_async_callback(store.close)
            edge = await stack.enter_async_context(Edge(self.config, agency, store))
            edges.append(edge)
        self.hub, police = edges

        async def at_hub(message: Delivered) -> None:
            original = message.header.fields.in_reply_to
            if original is not None:
                self.phases.current.arrive(original)

        async def at_police(message: Delivered) -> None:
            return None  # the agency system takes it

        await self.hub.consume(at_hub)
        await police.consume(at_police)

    async def warm_up(self) -> None:
        await closed_loop(self.submit, self.phases, WARM_UP, "warmup")
        await delivered(self.store_url, "warmup", WARM_UP)


@asynccontextmanager
async def exchange(
    broker: Broker, label: str, agencies: int, routers: int
) -> AsyncIterator[tuple[Exchange, list[Child]]]:
    """A fresh vhost, schema and area; ``routers`` router processes, started."""
    children: list[Child] = []
    async with AsyncExitStack() as stack:
        vhost = await stack.enter_async_context(broker.vhost(label))
        store_url = await stack.enter_async_context(pg_schema())
        area = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mash-scale-")))
        routers_store = f"{store_url}&application_name={application(store_url)}"
        config_path = make_area(area / "area", broker.url(vhost, 0), routers_store, agencies)
        config = load_config(str(config_path))
        for n in range(routers):
            children.append(
                await start_router(router_config(config_path, n, broker.url(vhost, n)), n)
            )
            stack.callback(children[-1].stop)
        the_exchange = Exchange(config_path, config, store_url)
        await within(the_exchange.open_edges(stack), "opening the edges")
        yield the_exchange, children


async def product_rate(
    broker: Broker, label: str, agencies: int, routers: int, messages: int
) -> Figure:
    """Throughput, with the raw ceiling left for the caller to fill in."""
    async with exchange(broker, label, agencies, routers) as (the_exchange, children):
        await the_exchange.warm_up()
        meter = await Meter(
            [child.process.pid for child in children], the_exchange.store_url
        ).start()
        await closed_loop(the_exchange.submit, the_exchange.phases, messages, "rate")
        await delivered(the_exchange.store_url, "rate", messages)
        return await meter.read(label, messages)


async def product_backlog(broker: Broker, backlog: int) -> Figure:
    """N requests wait in the hub's ingress queue while the router is stopped; then it drains
    them."""
    async with exchange(broker, "backlog", DEMO_AGENCIES, 1) as (the_exchange, children):
        await the_exchange.warm_up()
        children.pop().stop()  # its queue is declared; now it is down
        tracker = the_exchange.phases.start(backlog)
        await submit_only(the_exchange.submit, backlog, "backlog")
        url = the_exchange.config.broker_url
        async with await aio_pika.connect(url) as connection:
            queue = await (await connection.channel()).get_queue(topology.ingress_queue(SENDER))
            waiting = queue.declaration_result.message_count
        assert waiting == backlog, f"{waiting} of {backlog} waiting in {queue.name}"
        router = await start_router(the_exchange.config_path.with_name("gateway-r0.toml"), 0)
        try:
            meter = await Meter([router.process.pid], the_exchange.store_url).start()
            await wait_receipts(tracker, "backlog")
            await delivered(the_exchange.store_url, "backlog", backlog)
            return await meter.read(f"backlog of {backlog:,} in {queue.name}", backlog)
        finally:
            router.stop()


# --- the raw ceiling ---------------------------------------------------------------------------


@asynccontextmanager
async def raw(
    broker: Broker, label: str, agencies: int, relays: int, sizes: tuple[int, int]
) -> AsyncIterator[tuple[RawEdges, Phases, Callable[[], Awaitable[list[Child]]]]]:
    """The raw loop's topology and edges on a fresh vhost; the third item starts the relays."""
    async with AsyncExitStack() as stack:
        vhost = await stack.enter_async_context(broker.vhost(f"raw-{label}"))
        connection = await aio_pika.connect(broker.url(vhost, 0))
        async with connection:
            inboxes = [SENDER, RECIPIENT, *extra_agencies(agencies)]
            await topology.declare(await connection.channel(), inboxes, topology.Limits())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mash-scale-raw-")))
        phases = Phases()
        edges = RawEdges(broker.url(vhost, 0), *sizes, phases)
        stack.push_async_callback(edges.close)
        await within(edges.start(), "opening the raw edges")

        async def start_relays() -> list[Child]:
            children = []
            for n in range(relays):
                log = folder / f"relay-{n}.log"
                children.append(await spawn([*RELAY, broker.url(vhost, n)], log, "ready"))
                stack.callback(children[-1].stop)
            return children

        yield edges, phases, start_relays


async def raw_rate(
    broker: Broker, label: str, agencies: int, relays: int, messages: int, sizes: tuple[int, int]
) -> float:
    async with raw(broker, label, agencies, relays, sizes) as (edges, phases, start_relays):
        await start_relays()
        await closed_loop(edges.submit, phases, WARM_UP, "warmup")
        return messages / await closed_loop(edges.submit, phases, messages, "rate")


async def raw_backlog(broker: Broker, backlog: int, sizes: tuple[int, int]) -> float:
    async with raw(broker, "backlog", DEMO_AGENCIES, 1, sizes) as (edges, phases, start_relays):
        tracker = phases.start(backlog)
        await submit_only(edges.submit, backlog, "backlog")
        await start_relays()
        started = time.perf_counter()
        await wait_receipts(tracker, "raw backlog")
        return backlog / (time.perf_counter() - started)


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Plan:
    messages: int
    backlog: int
    routers: tuple[int, ...] = (1, 2, 3)
    agencies: tuple[int, ...] = (50, 200)


async def scenario(
    broker: Broker, plan: Plan, label: str, agencies: int, routers: int, sizes: tuple[int, int]
) -> Figure:
    """The product, then the raw loop on the same cluster with one relay per router."""
    print(f"# {label} ...", flush=True)
    figure = await product_rate(broker, label, agencies, routers, plan.messages)
    figure.ceiling = await raw_rate(broker, label, agencies, routers, plan.messages, sizes)
    figure.load = (figure.load[0], os.getloadavg()[0])
    print("#   " + ", ".join(row(figure)), flush=True)
    return figure


def message_sizes() -> tuple[int, int]:
    """Bytes of a sealed request and receipt, from a throwaway demo area."""
    with tempfile.TemporaryDirectory(prefix="mash-scale-sizes-") as tmp:
        area = make_area(Path(tmp, "area"), "amqp://127.0.0.1/", "sqlite:///x.db", DEMO_AGENCIES)
        return sealed_sizes(load_config(str(area)))


async def bench(plan: Plan, base: Path) -> list[Figure]:
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    # The nodes start through `su rabbitmq`, whose PAM session sets the soft limit of open
    # files to 1024; RabbitMQ 3.10 then stops accepting connections once a few hundred quorum
    # queues hold their files. The nodes read this file (rabbitmq-env) before they start.
    env_file = base.with_name(base.name + "-env.conf")
    env_file.write_text(f'. {MACHINE_ENV}\nulimit -S -n "$(ulimit -H -n)"\n')
    env_file.chmod(0o644)
    os.environ["RABBITMQ_CONF_ENV_FILE"] = str(env_file)
    cluster = Cluster.create(base)
    figures: list[Figure] = []
    sizes = message_sizes()
    try:
        started = time.perf_counter()
        await asyncio.to_thread(cluster.form)
        print(f"# cluster of 3 formed in {time.perf_counter() - started:.0f} s", flush=True)
        broker = Broker(cluster)
        for routers in plan.routers:
            label = f"{routers} router{'s' if routers > 1 else ''}, {DEMO_AGENCIES} agencies"
            figures.append(await scenario(broker, plan, label, DEMO_AGENCIES, routers, sizes))
        for agencies in plan.agencies:
            label = f"1 router, {agencies} agencies"
            figures.append(await scenario(broker, plan, label, agencies, 1, sizes))
        if plan.backlog:
            print(f"# backlog of {plan.backlog:,} ...", flush=True)
            figure = await product_backlog(broker, plan.backlog)
            figure.ceiling = await raw_backlog(broker, plan.backlog, sizes)
            figure.load = (figure.load[0], os.getloadavg()[0])
            print("#   " + ", ".join(row(figure)), flush=True)
            figures.append(figure)
    finally:
        await asyncio.to_thread(cluster.destroy)
        env_file.unlink()
    return figures


COLUMNS = (
    "Scenario",
    "msg/s",
    "raw ceiling",
    "ratio",
    "router CPU/msg",
    "store CPU/msg",
    "edges CPU/msg",
    "load avg",
)


def row(f: Figure) -> tuple[str, ...]:
    return (
        f.what,
        f"{f.rate:.0f}",
        f"{f.ceiling:.0f}",
        f"{f.rate / f.ceiling:.0%}",
        f"{f.router_cpu_ms:.2f} ms",
        f"{f.store_cpu_ms:.2f} ms",
        f"{f.bench_cpu_ms:.2f} ms",
        f"{f.load[0]:.1f}-{f.load[1]:.1f}",
    )


def report(plan: Plan, figures: list[Figure]) -> None:
    """The figures as the Markdown table bench/README.md quotes."""
    print(f"\n# {plan.messages:,} messages with receipts per throughput run, 500 in flight")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for figure in figures:
        print("| " + " | ".join(row(figure)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 messages, a backlog of 2,000")
    parser.add_argument("--messages", type=int, help="per throughput run (default 5,000)")
    parser.add_argument("--backlog", type=int, help="requests waiting (default 20,000; 0: none)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit(
            "scale.py starts RabbitMQ nodes as the package's rabbitmq user: run as root"
        )
    plan = Plan(
        messages=args.messages or (500 if args.quick else 5_000),
        backlog=args.backlog if args.backlog is not None else (2_000 if args.quick else 20_000),
    )
    logs.configure(json=True, quiet=True)
    print(f"# scale benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"# {shlex.join([Path(sys.executable).name, *sys.argv])}", flush=True)
    # A short folder: Erlang and the rabbitmq user must reach it.
    base = Path(f"/tmp/mash-scale-{uuid.uuid4().hex[:8]}")
    try:
        figures = asyncio.run(bench(plan, base))
    except asyncio.CancelledError:
        raise SystemExit(
            "interrupted; the cluster, routers, vhosts and schemas are cleaned up"
        ) from None
    report(plan, figures)


if __name__ == "__main__":
    main()
