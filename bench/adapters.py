"""Adapter benchmark: file drop, HTTP and MESH adapters beside their ceilings, in one run.

Run: .venv/bin/python bench/adapters.py [--quick] [--parts exchange,filedrop,http,mesh]

On the local RabbitMQ (127.0.0.1:5672, guest/guest), in a fresh vhost that is
deleted afterwards, with the demo area `init` writes and the router in its
own process (``python -m gateway run``, as deployed), it prints:

- exchange: the police Edge submitting the Referral the police profile
  produces, to the hub, at most 500 in flight; done when the police Edge
  has every receipt. This is the exchange's own end-to-end rate, the
  ceiling the file drop and HTTP adapters are held to (target >= 50%);
- file drop: N police PPN files (10,000; 1,000 with --quick) already in the
  outbox when the police adapter starts; done when every receipt is a file
  in the adapter's inbox/;
- HTTP: N children's social care case exports POSTed by 32 clients to the
  csc adapter; done when every receipt has been POSTed to the csc webhook.
  Beside it, the same 32 clients POSTing the same body to a bare aiohttp
  echo endpoint in this process;
- MESH, against a mesh-sandbox server on localhost: the trust's client
  sends N CP-IS notifications (1,000; 200 with --quick) to the adapter's
  mailbox and the health adapter takes them to the hub; beside it, the bare
  mesh-client sending N and then receiving, reading and acknowledging them,
  and the exchange alone (the police Edge, N Referrals with receipts). The
  adapter's overhead is its time over the bare client's (target <= 20%);
  since the adapter's path also crosses the exchange, its time is also
  shown against the bare client's and the exchange's added up. Both
  mailboxes are emptied before each MESH phase (mesh-sandbox looks through
  a mailbox's every message on each request), and the CPU time per
  message of this process, the router and the sandbox (from /proc) is
  printed for each phase.

The adapters and edges run in this process and log warnings only.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from mesh_client import MeshClient

from adapters import http_tokens
from adapters.framework import run_adapter
from adapters.ledger import Ledger
from adapters.profile import BUILTIN, load_profile
from adapters.transports.mesh import secret_files
from bench.e2e import Child, cpu_seconds, free_port, fresh_vhost, print_table, spawn
from gateway.cli import main as cli_main
from gateway.config.adapter_config import AdapterConfig
from gateway.config.area_config import AreaConfig, load_config
from gateway.infra import logs
from gateway.services.edge import Delivered, Edge, Submission
from gateway.store.sqlite import SqliteStore

PPN = (BUILTIN / "police" / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()
EXPORT = (BUILTIN / "csc" / "samples" / "case-export-information-return.xml").read_bytes()
NOTIFICATION = (BUILTIN / "health" / "samples" / "cpis-attendance.xml").read_bytes()
IN_FLIGHT = 500
CLIENTS = 32
MESH_KEY, MESH_PASSWORD = "TestKey", "password"
ADAPTER_BOX, TRUST_BOX = "X26ABC1", "X26ABC2"
PARTS = ("exchange", "filedrop", "http", "mesh")


async def until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not done within {timeout:.0f} s")
        await asyncio.sleep(0.02)


class Counter:
    """Counts what a handler receives, by message type."""

    def __init__(self) -> None:
        self.by_type: dict[str, int] = {}

    async def __call__(self, delivered: Delivered) -> None:
        kind = delivered.header.fields.message_type
        self.by_type[kind] = self.by_type.get(kind, 0) + 1

    def count(self, kind: str) -> int:
        return self.by_type.get(kind, 0)


async def open_edge(config: AreaConfig, agency: str, area: Path, handler: Counter) -> Edge:
    store = SqliteStore(str(area / f"bench-edge-{agency}.db"))
    await store.open()
    edge = Edge(config, agency, store)
    await edge.__aenter__()
    await edge.consume(handler)
    return edge


class Adapter:
    """One adapter running in this process, from ``spec``."""

    def __init__(self, config: AreaConfig, spec: AdapterConfig, ledger: Ledger) -> None:
        self.stop, self.ready = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(run_adapter(config, spec, ledger, self.stop, self.ready))

    async def started(self) -> None:
        waiter = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait({self.task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.task.done():
            self.task.result()

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def spec_of(config: AreaConfig, agency: str) -> AdapterConfig:
    return next(a for a in config.adapters if a.agency == agency)


class Cpu:
    """The CPU time each named process uses from ``start`` on (from /proc)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.started: dict[str, float] = {}

    def start(self) -> None:
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def per_message(self, n: int) -> dict[str, float]:
        """Milliseconds of CPU per message, by process, since ``start``."""
        return {
            name: 1000 * (cpu_seconds(pid) - self.started[name]) / n
            for name, pid in self.pids.items()
        }


async def bench_exchange(config: AreaConfig, area: Path, n: int) -> float:
    """The police Edge itself: the ceiling for the adapters."""
    payload = load_profile(BUILTIN / "police").inbound(PPN, "ppn.xml")[0].payload
    receipts = Counter()
    police = await open_edge(config, "police", area, receipts)
    sent = [0]
    try:

        async def submitter(count: int) -> None:
            for _ in range(count):
                while sent[0] - receipts.count("DeliveryReceipt") >= IN_FLIGHT:
                    await asyncio.sleep(0.001)
                sent[0] += 1
                await police.submit(Submission(payload, ("hub",), correlation_id=str(uuid.uuid4())))

        started = time.perf_counter()
        await asyncio.gather(*(submitter(n // 64 + (i < n % 64)) for i in range(64)))
        await until(lambda: receipts.count("DeliveryReceipt") >= n, "exchange", 60 + n / 20)
        return n / (time.perf_counter() - started)
    finally:
        await police.__aexit__(None, None, None)
        await police.store.close()


async def bench_filedrop(config: AreaConfig, area: Path, ledger: Ledger, n: int) -> float:
    spec = spec_of(config, "police")
    assert spec.filedrop is not None
    spec = dataclasses.replace(spec, filedrop=dataclasses.replace(spec.filedrop, poll_seconds=0.05))
    root = spec.filedrop.root if spec.filedrop else area
    outbox, inbox = root / "outbox", root / "inbox"
    outbox.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        # Each file differs (a file dropped twice is refused as a duplicate).
        body = PPN.replace(b"PPN-2026-004512", f"PPN-2026-{i:06d}".encode())
        (outbox / f"ppn-{i:06d}.xml.tmp").write_bytes(body)
        os.rename(outbox / f"ppn-{i:06d}.xml.tmp", outbox / f"ppn-{i:06d}.xml")

    def receipts() -> int:
        return sum(1 for e in os.scandir(inbox) if e.name.endswith(".xml")) if inbox.exists() else 0

    started = time.perf_counter()
    adapter = Adapter(config, spec, ledger)
    await adapter.started()
    try:
        await until(lambda: receipts() >= n, "file drop", 120 + n / 10)
        return n / (time.perf_counter() - started)
    finally:
        await adapter.close()


async def post_all(url: str, body: bytes, headers: dict[str, str], n: int) -> float:
    """``n`` POSTs from CLIENTS concurrent clients; requests/s."""
    remaining = iter(range(n))
    async with aiohttp.ClientSession() as session:

        async def client() -> None:
            for _ in remaining:
                async with session.post(url, data=body, headers=headers) as reply:
                    if reply.status >= 300:
                        raise SystemExit(f"{url}: HTTP {reply.status}: {await reply.text()}")
                    await reply.read()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return n / (time.perf_counter() - started)


async def bench_http(config: AreaConfig, ledger: Ledger, n: int) -> tuple[float, float]:
    receipts = [0]

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        if request.headers.get("X-Message-Type") == "DeliveryReceipt":
            receipts[0] += 1
        return web.Response(status=204)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), status=200)

    hook_port, echo_port, listen_port = free_port(), free_port(), free_port()
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/mash", webhook)
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    await web.TCPSite(runner, "127.0.0.1", echo_port).start()
    spec = spec_of(config, "csc")
    assert spec.http is not None
    spec = dataclasses.replace(
        spec,
        http=dataclasses.replace(
            spec.http, port=listen_port, webhook=f"http://127.0.0.1:{hook_port}/mash"
        ),
    )
    token = http_tokens.issue(config.private_keys_dir, "csc")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
    try:
        echo_rate = await post_all(f"http://127.0.0.1:{echo_port}/echo", EXPORT, headers, n)
        adapter = Adapter(config, spec, ledger)
        await adapter.started()
        try:
            started = time.perf_counter()
            await post_all(f"http://127.0.0.1:{listen_port}/messages", EXPORT, headers, n)
            await until(lambda: receipts[0] >= n, "HTTP", 60 + n / 10)
            return n / (time.perf_counter() - started), echo_rate
        finally:
            await adapter.close()
    finally:
        await runner.cleanup()


def mesh(url: str, mailbox: str) -> MeshClient:
    return MeshClient(url, mailbox, MESH_PASSWORD, shared_key=MESH_KEY.encode())


def reset(url: str, mailbox: str) -> None:
    request = urllib.request.Request(f"{url}/admin/reset/{mailbox}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10):
        pass


def receipts_at(url: str) -> int:
    """How many messages wait in the trust's mailbox (the adapter's receipts)."""
    with mesh(url, TRUST_BOX) as trust:
        return sum(1 for _ in trust.iterate_message_ids())


def bare_mesh(url: str, n: int) -> float:
    """mesh-client alone: send n, then list, read and acknowledge them; messages/s."""
    started = time.perf_counter()
    with mesh(url, TRUST_BOX) as trust, mesh(url, ADAPTER_BOX) as box:
        for _ in range(n):
            trust.send_message(ADAPTER_BOX, NOTIFICATION, workflow_id="CPIS")
        received = 0
        while received < n:
            for mesh_id in box.list_messages():
                message = box.retrieve_message(mesh_id)
                message.read()
                message.close()  # type: ignore[no-untyped-call]
                box.acknowledge_message(mesh_id)
                received += 1
    return n / (time.perf_counter() - started)


async def bench_mesh(
    config: AreaConfig, area: Path, ledger: Ledger, hub: Counter, url: str, n: int, cpu: Cpu
) -> dict[str, float]:
    """The MESH adapter, the bare mesh-client and the exchange alone, each with its CPU."""
    results: dict[str, float] = {}

    def took(phase: str) -> None:
        results.update({f"cpu_{phase}_{k}": v for k, v in cpu.per_message(n).items()})

    for path, secret in zip(
        secret_files(config.private_keys_dir, "health"), (MESH_PASSWORD, MESH_KEY), strict=True
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret)
        os.chmod(path, 0o600)
    cpu.start()
    results["mesh_exchange"] = await bench_exchange(config, area, n)
    took("exchange")
    for box in (ADAPTER_BOX, TRUST_BOX):
        reset(url, box)
    cpu.start()
    results["mesh_bare"] = await asyncio.to_thread(bare_mesh, url, n)
    took("bare")
    for box in (ADAPTER_BOX, TRUST_BOX):
        reset(url, box)
    spec = spec_of(config, "health")
    assert spec.mesh is not None
    spec = dataclasses.replace(
        spec, mesh=dataclasses.replace(spec.mesh, url=url, poll_seconds=0.05)
    )
    before = hub.count("Referral")
    adapter = Adapter(config, spec, ledger)
    await adapter.started()
    try:
        cpu.start()
        started = time.perf_counter()

        def send() -> None:
            with mesh(url, TRUST_BOX) as trust:
                for _ in range(n):
                    trust.send_message(ADAPTER_BOX, NOTIFICATION, workflow_id="CPIS")

        # The trust's system is another machine: its thread is not one of asyncio's default
        # threads, which the adapter's ledger and file work run on.
        with ThreadPoolExecutor(1, thread_name_prefix="trust") as trust:
            await asyncio.get_running_loop().run_in_executor(trust, send)
        await until(lambda: hub.count("Referral") - before >= n, "MESH", 60 + n / 5)
        results["mesh"] = n / (time.perf_counter() - started)
        took("mesh")
        # Not part of the figure above: every receipt sent back to the trust over MESH.
        deadline = time.monotonic() + 60 + n / 5
        while await asyncio.to_thread(receipts_at, url) < n:
            if time.monotonic() > deadline:
                raise SystemExit("MESH: the trust's mailbox did not get every receipt")
            await asyncio.sleep(0.2)
        results["mesh_receipts"] = n / (time.perf_counter() - started)
        return results
    finally:
        await adapter.close()


async def start_sandbox(area: Path) -> tuple[Child, str]:
    port = free_port()
    env = {"STORE_MODE": "memory", "AUTH_MODE": "full", "SHARED_KEY": MESH_KEY, "ENV": "local"}
    os.environ.update(env)  # inherited by the sandbox process
    args = [sys.executable, "-m", "uvicorn", "mesh_sandbox.api:app", "--port", str(port)]
    child = await spawn(args, area / "mesh-sandbox.log", "Application startup complete")
    return child, f"http://127.0.0.1:{port}"


async def bench(quick: bool, parts: set[str]) -> dict[str, float]:
    files, requests, notes = (1_000, 1_000, 200) if quick else (10_000, 5_000, 1_000)
    results: dict[str, float] = {}
    url, delete = await fresh_vhost("adapters")
    with tempfile.TemporaryDirectory(prefix="mash-bench-adapters-") as tmp:
        area = Path(tmp, "area")
        assert cli_main(["init", str(area), "--broker-url", url]) == 0
        config_path = area / "gateway.toml"
        config = load_config(str(config_path))
        router = [sys.executable, "-m", "gateway", "--config", str(config_path), "run"]
        child = await spawn([*router, "--json-logs"], area / "router.log", "router.started")
        sandbox, mesh_url = await start_sandbox(area)
        cpu = Cpu(
            {"bench": os.getpid(), "router": child.process.pid, "sandbox": sandbox.process.pid}
        )
        hub_counter = Counter()
        hub = await open_edge(config, "hub", area, hub_counter)
        ledger = Ledger(area / "state" / "adapters.db")
        try:
            if "exchange" in parts:
                results["exchange"] = await bench_exchange(config, area, files)
            if "filedrop" in parts:
                results["filedrop"] = await bench_filedrop(config, area, ledger, files)
            if "http" in parts:
                results["http"], results["echo"] = await bench_http(config, ledger, requests)
            if "mesh" in parts:
                results |= await bench_mesh(config, area, ledger, hub_counter, mesh_url, notes, cpu)
        finally:
            ledger.close()
            await hub.__aexit__(None, None, None)
            await hub.store.close()
            sandbox.stop()
            child.stop()
            await delete()
    results |= {"files": files, "requests": requests, "notes": notes}
    return results


def report(r: dict[str, float]) -> None:
    rows: list[tuple[str, str]] = []
    if "exchange" in r:
        what = f"exchange: police Edge to hub, {r['files']:.0f} with receipts"
        rows.append((what, f"{r['exchange']:.0f} msg/s"))
    if "filedrop" in r:
        what = f"file drop: {r['files']:.0f} PPN files, with receipts"
        rows.append((what, f"{r['filedrop']:.0f} files/s"))
        if "exchange" in r:
            ratio = f"{100 * r['filedrop'] / r['exchange']:.0f}%"
            rows.append(("  file drop / exchange (target >= 50%)", ratio))
    if "http" in r:
        what = f"HTTP: {r['requests']:.0f} case exports, 32 clients, with receipts"
        rows.append((what, f"{r['http']:.0f} req/s"))
        rows.append(("  bare aiohttp echo, same clients and body", f"{r['echo']:.0f} req/s"))
        if "exchange" in r:
            ratio = f"{100 * r['http'] / r['exchange']:.0f}%"
            rows.append(("  HTTP / exchange (target >= 50%)", ratio))
    if "mesh" in r:
        n = r["notes"]
        rows.append((f"MESH: {n:.0f} notifications through the adapter", f"{r['mesh']:.1f} msg/s"))
        what = "  until the trust's mailbox holds every receipt"
        rows.append((what, f"{r['mesh_receipts']:.1f} msg/s"))
        rows.append(("  bare mesh-client send + receive + ack", f"{r['mesh_bare']:.1f} msg/s"))
        what = f"  exchange alone: police Edge to hub, {n:.0f} with receipts"
        rows.append((what, f"{r['mesh_exchange']:.1f} msg/s"))
        over = f"{100 * (r['mesh_bare'] / r['mesh'] - 1):+.0f}%"
        rows.append(("  adapter time over bare (target <= 20%)", over))
        both = 1 / r["mesh_bare"] + 1 / r["mesh_exchange"]
        rows.append(("  adapter time over bare + exchange, one after the other", over_of(both, r)))
        for phase, what in (("bare", "bare"), ("exchange", "exchange"), ("mesh", "adapter")):
            cpu = {k: r[f"cpu_{phase}_{k}"] for k in ("bench", "router", "sandbox")}
            parts = " + ".join(f"{v:.1f}" for v in cpu.values())
            rows.append(
                (
                    f"  CPU ms/msg, {what}: bench + router + sandbox",
                    f"{parts} = {sum(cpu.values()):.1f}",
                )
            )
    print_table(rows)


def over_of(seconds_each: float, r: dict[str, float]) -> str:
    """The adapter's time per message over ``seconds_each``, in percent."""
    return f"{100 * (1 / r['mesh'] / seconds_each - 1):+.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 files and requests, 200 MESH")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}"
    )
    args = parser.parse_args()
    logs.configure(json=True, quiet=True)
    print(f"# adapter benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, router in its own process"
    )

    async def run() -> dict[str, float]:
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
        return await bench(args.quick, set(args.parts.split(",")))

    report(asyncio.run(run()))


if __name__ == "__main__":
    main()
