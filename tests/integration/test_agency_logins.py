"""After `broker setup` each edge logs in as its agency's user and the router as its own.

The router's user may not declare anything (gateway/broker/definitions.py),
so it checks the topology setup declared and names what is missing.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

from gateway.broker.connection import connect
from gateway.broker.topology import TopologyMissing, inbox_queue
from gateway.broker.vhost import BrokerAdmin
from gateway.config.area_config import AreaConfig
from gateway.core.resources import schemas_dir
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.router import run_router
from gateway.store.sqlite import SqliteStore
from tests.integration.logins_harness import area_with_logins

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


@pytest.fixture(scope="module")
def area(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AreaConfig]:
    with area_with_logins(broker_admin, tmp_path_factory.mktemp("logins") / "area") as config:
        yield config


def connected_users(vhost: str) -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "user", "vhost"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line.split("\t")[0] for line in listed.splitlines() if line.endswith(f"\t{vhost}")}


async def test_edges_and_the_router_use_their_own_logins_and_messages_still_flow(
    area: AreaConfig, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "router.db"))
    await store.open()
    stop, ready = asyncio.Event(), asyncio.Event()
    router = asyncio.create_task(run_router(area, store, stop, ready))
    received: list[Delivered] = []

    async def police_system(delivered: Delivered) -> None:
        received.append(delivered)

    try:
        await asyncio.wait_for(ready.wait(), 15)
        hub = Edge(area, "hub", store)
        police = Edge(area, "police", store)
        assert urlsplit(hub.broker_url).username == f"{area.broker_user_prefix}hub"
        assert urlsplit(police.broker_url).username == f"{area.broker_user_prefix}police"
        async with hub, police:
            await police.consume(police_system)
            await hub.submit(Submission(REQUEST, ("police",)))
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.1)
            vhost = urlsplit(area.broker_url).path.lstrip("/")
            users = await asyncio.to_thread(connected_users, vhost)
        assert [d.header.fields.message_type for d in received] == ["InformationRequest"]
        prefix = area.broker_user_prefix
        assert users == {f"{prefix}gateway", f"{prefix}hub", f"{prefix}police"}  # no guest
    finally:
        stop.set()
        await router
        await store.close()


async def test_the_router_on_its_own_login_names_a_missing_queue_and_declares_nothing(
    area: AreaConfig, tmp_path: Path
) -> None:
    """An agency added without rerunning `broker setup`: the router refuses to start."""
    missing = inbox_queue("police")
    admin = await connect(area.broker_url)  # the area's URL: the administrator
    async with admin:
        await (await admin.channel()).queue_delete(missing)
    store = SqliteStore(str(tmp_path / "router.db"))
    await store.open()
    try:
        with pytest.raises(TopologyMissing, match=f"no queue '{missing}'.*broker setup"):
            await asyncio.wait_for(run_router(area, store, asyncio.Event()), 30)
    finally:
        await store.close()
    admin = await connect(area.broker_url)
    async with admin:
        with pytest.raises(ChannelNotFoundEntity):  # the router did not declare it again
            await (await admin.channel()).declare_queue(missing, passive=True)
