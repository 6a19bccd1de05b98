"""A real exchange for tests: a fresh vhost, a demo area on it, the router running in-process.

Each test gets its own vhost, so inbox names (agency.police.inbox) never
carry messages from one test into another.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.broker.topology import Limits
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.deadlines import DeadlinePolicy
from gateway.core.envelope import TimeWindow
from gateway.services.edge import Delivered, Edge
from gateway.services.router import DEFAULT_WINDOW, run_router
from gateway.store.sqlite import SqliteStore

PURPOSE = "child-safeguarding"
BASES = ("uk-gdpr-6-1-e", "uk-gdpr-9-2-g-dpa-sch1-18")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``check`` holds; fail with a clear message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


@dataclass
class Inbox:
    """What an agency's system received, in order, and the bytes of each message's files
    (read while the handler runs: the edge removes its staged copies after)."""

    messages: list[Delivered] = field(default_factory=list)
    files: dict[str, list[bytes]] = field(default_factory=dict)  # by message id

    async def handler(self, delivered: Delivered) -> None:
        if delivered.attachments:
            self.files[delivered.header.fields.message_id] = [
                a.path.read_bytes() for a in delivered.attachments
            ]
        self.messages.append(delivered)

    def of_type(self, message_type: str) -> list[Delivered]:
        return [m for m in self.messages if m.header.fields.message_type == message_type]


async def open_edge(
    config: AreaConfig, agency: str, tmp: Path, inbox: Inbox | None, takes_attachments: bool = False
) -> Edge:
    """A connected edge with its own SQLite file, consuming into ``inbox`` when one is given."""
    store = SqliteStore(str(tmp / f"edge-{agency}.db"))
    await store.open()
    edge = Edge(config, agency, store)
    await edge.__aenter__()
    if inbox is not None:
        await edge.consume(inbox.handler, takes_attachments)
    return edge


@dataclass
class Exchange:
    config: AreaConfig
    amqp_url: str
    router_store: SqliteStore
    tmp: Path
    edges: dict[str, Edge] = field(default_factory=dict)
    inboxes: dict[str, Inbox] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)  # the queue bounds the router declares
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _router: asyncio.Task[None] | None = None

    async def start_router(
        self, window: TimeWindow = DEFAULT_WINDOW, policy: DeadlinePolicy | None = None
    ) -> None:
        """Start the router on the area config as it is on disk now."""
        self.config = load_config(str(self.config.path))
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        self._router = asyncio.create_task(
            run_router(
                self.config,
                self.router_store,
                self._stop,
                ready,
                window=window,
                policy=policy,
                limits=self.limits,
            )
        )
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({self._router, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._router.done():
            self._router.result()  # the router failed to start: raise its error in the test
        assert ready.is_set(), "router did not start within 15 s"

    async def stop_router(self) -> None:
        if self._router is not None:
            self._stop.set()
            await asyncio.wait_for(self._router, 10)
            self._router = None

    async def restart_router(
        self, window: TimeWindow = DEFAULT_WINDOW, policy: DeadlinePolicy | None = None
    ) -> None:
        await self.stop_router()
        await self.start_router(window, policy)

    async def reload(self) -> None:
        """Take the area config as it is on disk now: the edges reload, an in-process router
        restarts (a router in another process is the caller's to restart)."""
        self.config = load_config(str(self.config.path))
        for edge in self.edges.values():
            edge.reload(self.config)
        if self._router is not None:
            await self.restart_router()

    async def edge(
        self, agency: str, consume: bool = True, takes_attachments: bool = False
    ) -> Edge:
        """The agency's edge, consuming its inbox into ``inboxes[agency]``."""
        if agency not in self.edges:
            self.inboxes[agency] = Inbox()
            self.edges[agency] = await open_edge(
                self.config,
                agency,
                self.tmp,
                self.inboxes[agency] if consume else None,
                takes_attachments,
            )
        return self.edges[agency]


@asynccontextmanager
async def running_exchange(
    admin: BrokerAdmin,
    base_url: str,
    tmp: Path,
    policy: DeadlinePolicy | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[Exchange]:
    vhost = f"mash-test-{uuid.uuid4().hex[:8]}"
    await admin.create_vhost(vhost, "guest")
    url = vhost_url(base_url, vhost)
    area = tmp / "area"
    assert main(["init", str(area), "--broker-url", url]) == 0
    config = load_config(str(area / "gateway.toml"))
    store = SqliteStore(str(tmp / "router.db"))
    await store.open()
    exchange = Exchange(config, url, store, tmp, limits=limits or Limits())
    try:
        await exchange.start_router(policy=policy)
        yield exchange
    finally:
        await exchange.stop_router()
        for edge in exchange.edges.values():
            await edge.__aexit__(None, None, None)
            await edge.store.close()
        await store.close()
        await admin.delete_vhost(vhost)
