"""A three-node RabbitMQ cluster on this machine, and a TCP front that routes to a live node.

Each node is the machine's own RabbitMQ package started as a separate Erlang
node (``mashcN@localhost``) with its own ports, data and log folders and no
plugins, so the machine's main node and its users are untouched. The nodes
run as the package's ``rabbitmq`` user (its scripts switch to it) and share
its Erlang cookie, so ``rabbitmqctl -n`` drives them.

``Front`` stands in for the load balancer the README tells operators to put
before a cluster: each new client connection goes to the first node that
accepts it. Clients see one URL; when their node dies, their robust
connection reconnects through the front to a survivor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Node:
    name: str  # mashc1@localhost
    folder: Path
    amqp_port: int
    dist_port: int

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.folder / "pid"),
        }

    def pid(self) -> int:
        return int((self.folder / "pid").read_text().strip())


def ctl(node: Node, *args: str, timeout: float = START_TIMEOUT_S) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-n", node.name, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"rabbitmqctl -n {node.name} {' '.join(args)}: {done.stdout}{done.stderr}"
        )
    return done.stdout


@dataclass
class Cluster:
    base: Path
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, size: int = 3) -> Cluster:
        base.mkdir(parents=True)
        cluster = cls(base)
        for n in range(1, size + 1):
            folder = base / f"c{n}"
            folder.mkdir()
            node = Node(f"mashc{n}-{os.getpid()}@localhost", folder, free_port(), free_port())
            (folder / "enabled_plugins").write_text("[].\n")
            (folder / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
                "loopback_users = none\n"  # guest from the front, which is on loopback too
            )
            cluster.nodes.append(node)
        shutil.chown(base, user="rabbitmq", group="rabbitmq")
        for path in base.rglob("*"):
            shutil.chown(path, user="rabbitmq", group="rabbitmq")
        return cluster

    def start(self, node: Node) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=node.env, check=True, timeout=60)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the VM registers with epmd some seconds after -detached returns
            try:
                ctl(node, "await_startup", "--timeout", "30", timeout=60)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def form(self) -> None:
        """Start every node and join the others to the first."""
        for node in self.nodes:
            self.start(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            ctl(node, "stop_app")
            ctl(node, "join_cluster", first.name)
            ctl(node, "start_app")
        running = ctl(first, "cluster_status", "--formatter", "json")
        missing = [n.name for n in self.nodes if n.name not in running]
        assert not missing, f"not clustered: {missing}"

    def kill(self, node: Node) -> None:
        """``kill -9`` of the node's Erlang VM: no clean shutdown, no leader hand-over."""
        pid = node.pid()
        os.kill(pid, signal.SIGKILL)
        (node.folder / "pid").unlink()
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def leader_of(self, queue: str, vhost: str, asked: Node) -> Node:
        listed = ctl(
            asked, "-q", "list_queues", "-p", vhost, "name", "leader", "--no-table-headers"
        )
        for line in listed.splitlines():
            name, _, leader = line.partition("\t")
            if name == queue:
                return next(n for n in self.nodes if n.name == leader.strip())
        raise AssertionError(f"no queue {queue} in {vhost}: {listed}")

    def destroy(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                ctl(node, "stop", timeout=60)
            with contextlib.suppress(Exception):
                os.kill(node.pid(), signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Front:
    """A TCP front on 127.0.0.1: each connection goes to the first node that accepts it."""

    backends: Sequence[int]
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        for port in self.backends:
            try:
                node_r, node_w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(_pipe(client_r, node_w), _pipe(node_r, client_w))
            return
        client_w.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.close()
