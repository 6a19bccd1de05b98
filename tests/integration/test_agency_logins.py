"""After `broker setup` each edge logs in as its own agency user, and messages still flow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.resources import schemas_dir
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.router import run_router
from gateway.store.sqlite import SqliteStore
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


@pytest.fixture
def area(broker_admin: BrokerAdmin, tmp_path: Path) -> Iterator[AreaConfig]:
    vhost = f"mash-test-{uuid.uuid4().hex[:8]}"
    prefix = f"{vhost}-"
    directory = tmp_path / "area"
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    toml = directory / "gateway.toml"
    text = toml.read_text()
    toml.write_text(text.replace("\n[store]", f'user_prefix = "{prefix}"\n\n[store]', 1))
    config = load_config(str(toml))
    try:
        assert main(["--config", str(toml), "broker", "setup"]) == 0
        yield config
    finally:
        asyncio.run(broker_admin.delete_vhost(vhost))
        for principal in config.registry.agencies:
            asyncio.run(broker_admin.delete_user(f"{prefix}{principal}"))


async def test_edges_use_their_agency_login_and_messages_still_flow(
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
        assert [d.header.fields.message_type for d in received] == ["InformationRequest"]
    finally:
        stop.set()
        await router
        await store.close()
