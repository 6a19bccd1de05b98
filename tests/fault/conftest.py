"""Fault-test fixtures: a real router process on a fresh vhost, in-process edges, broker restarts.

The router runs as ``python -m gateway run``, the way an operator runs it, so
``kill -9`` is a real crash: no finally blocks, no clean channel close. Edges
run in the test's event loop, each with its own SQLite file, so the only
cross-process sharing is the router's own store, which the test reads
read-only (SQLite WAL allows it while the router writes).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.broker import topology
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.demo.area import DEMO_AGENCIES
from gateway.services.edge import Edge
from gateway.store import SQLITE_PREFIX
from tests.integration.conftest import AMQP_URL, broker_admin, pg_schema_url
from tests.integration.exchange_harness import Inbox, open_edge

# Fixtures shared with the integration tests.
__all__ = ["broker_admin", "pg_schema_url"]

ROUTER_START_TIMEOUT_S = 20.0
# The consumers of a run with the router (one per agency's ingress) and the hub's and
# police's edges.
EXPECTED_CONSUMERS = {
    **{topology.ingress_queue(a.id): 1 for a in DEMO_AGENCIES if a.kind != "gateway"},
    topology.inbox_queue("hub"): 1,
    topology.inbox_queue("police"): 1,
    topology.DIRECTORY_QUEUE: 3,  # the router and both edges follow the area directory
}

BROKER_START_TIMEOUT_S = 60


@dataclass
class RouterProcess:
    """``mash-gateway run`` in its own process; its log lines go to ``log_path``."""

    config_path: Path
    log_path: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    async def start(self) -> None:
        """Start the router and wait for its consumer to be running."""
        assert self.process is None, "the router is already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    "--config",
                    str(self.config_path),
                    "run",
                    *self.extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        deadline = time.monotonic() + ROUTER_START_TIMEOUT_S
        while self._started_count() < self.starts:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(
                    f"the router exited with {code} at start-up: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the router did not start in time: {self.log_tail()}")
            await asyncio.sleep(0.05)

    def kill(self) -> int:
        """``kill -9``: the router gets no chance to finish, ack or close anything."""
        assert self.process is not None, "the router is not running"
        os.kill(self.process.pid, signal.SIGKILL)
        code = self.process.wait(10)
        self.process = None
        return code

    def stop(self) -> None:
        """SIGTERM, as systemd stops it; SIGKILL if it does not stop within 10 s."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _started_count(self) -> int:
        return self.log_path.read_text(errors="replace").count('"router.started"')

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class FaultArea:
    """A demo area on its own vhost, its router process, and the edges the test runs."""

    config: AreaConfig
    vhost: str
    amqp_url: str
    tmp: Path
    router: RouterProcess
    edges: dict[str, Edge] = field(default_factory=dict)
    inboxes: dict[str, Inbox] = field(default_factory=dict)

    @property
    def router_db(self) -> Path:
        assert self.config.store_url.startswith(SQLITE_PREFIX)
        return Path(self.config.store_url[len(SQLITE_PREFIX) :])

    async def edge(self, agency: str) -> Edge:
        """The agency's edge with its own SQLite file, consuming its inbox into ``inboxes``."""
        if agency not in self.edges:
            self.inboxes[agency] = Inbox()
            self.edges[agency] = await open_edge(
                self.config, agency, self.tmp, self.inboxes[agency]
            )
        return self.edges[agency]

    async def wait_for(self, what: str, check: Callable[[], bool], deadline: float) -> None:
        """Wait until ``check`` holds; past ``deadline`` (monotonic) fail with the router's log."""
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not reached in time; router log:\n{self.router.log_tail()}"
                )
            await asyncio.sleep(0.1)

    def received(self, agency: str, count: int) -> Callable[[], bool]:
        """A check that ``agency``'s system has received at least ``count`` messages."""
        return lambda: len(self.inboxes[agency].messages) >= count

    def router_states(self, message_type: str) -> Counter[str]:
        """How many messages of ``message_type`` the router's store holds, by state."""
        if not self.router_db.exists():
            return Counter()
        with sqlite3.connect(f"file:{self.router_db}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute(
                "SELECT state, COUNT(*) FROM messages WHERE message_type = ? GROUP BY state",
                (message_type,),
            ).fetchall()
        return Counter({state: count for state, count in rows})


@pytest.fixture
async def area(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[FaultArea]:
    """A fresh vhost and demo area with the router process started; all removed afterwards."""
    vhost = f"mash-fault-{uuid.uuid4().hex[:8]}"
    await broker_admin.create_vhost(vhost, "guest")
    url = vhost_url(AMQP_URL, vhost)
    directory = tmp_path / "area"
    assert main(["init", str(directory), "--broker-url", url]) == 0
    config_path = directory / "gateway.toml"
    fault_area = FaultArea(
        load_config(str(config_path)),
        vhost,
        url,
        tmp_path,
        RouterProcess(config_path, tmp_path / "router.log"),
    )
    try:
        await fault_area.router.start()
        yield fault_area
    finally:
        fault_area.router.stop()
        for edge in fault_area.edges.values():
            await edge.__aexit__(None, None, None)
            await edge.store.close()
        await broker_admin.delete_vhost(vhost)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 1):
            return True
    except OSError:
        return False


async def run_rabbitmqctl(executable: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        executable,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace").strip()
    if process.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed ({process.returncode}): {text}")
    return text


@pytest.fixture
def rabbitmqctl() -> str:
    """rabbitmqctl, when this user may drive the local node (root or the rabbitmq user)."""
    executable = shutil.which("rabbitmqctl")
    if executable is None:
        pytest.skip("rabbitmqctl is not on PATH: the broker restart test needs the local node")
    probe = subprocess.run(
        [executable, "-q", "status"], capture_output=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        pytest.skip("rabbitmqctl cannot drive the node: run the fault tests as root")
    return executable


@asynccontextmanager
async def broker_stopped(rabbitmqctl: str) -> AsyncIterator[None]:
    """Stop the RabbitMQ application (every connection is closed) and always start it again.

    ``stop_app``/``start_app`` restarts the broker inside its Erlang node: all
    connections drop, quorum queues recover from their logs, and the node,
    its cookie and its service manager stay as they were.
    """
    await run_rabbitmqctl(rabbitmqctl, "stop_app")
    try:
        yield
    finally:
        await run_rabbitmqctl(rabbitmqctl, "start_app")
        await run_rabbitmqctl(
            rabbitmqctl, "await_startup", "--timeout", str(BROKER_START_TIMEOUT_S)
        )
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        broker = urlsplit(AMQP_URL)
        while not _port_open(broker.hostname or "127.0.0.1", broker.port or 5672):
            if time.monotonic() > deadline:
                raise AssertionError("RabbitMQ did not listen on 5672 again after start_app")
            await asyncio.sleep(0.2)


async def list_consumers(rabbitmqctl: str, vhost: str) -> dict[str, int]:
    """Queues in ``vhost`` that have consumers, with how many each."""
    text = await run_rabbitmqctl(
        rabbitmqctl, "-q", "list_queues", "-p", vhost, "name", "consumers", "--no-table-headers"
    )
    found = {}
    for line in text.splitlines():
        name, count = line.split()
        if int(count):
            found[name] = int(count)
    return found
