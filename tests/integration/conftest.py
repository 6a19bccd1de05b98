"""Fixtures against real services: a temp tracking store, and a fresh RabbitMQ vhost per session.

The broker URL comes from $MASH_TEST_AMQP_URL (default: guest on 127.0.0.1).
Each session works in its own vhost ``mash-test-<uuid8>``, deleted at the end,
so parallel runs and other users of the broker do not see each other.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.vhost import BrokerAdmin, admin_for, vhost_url
from gateway.store import TrackingStore
from gateway.store.sqlite import SqliteStore

AMQP_URL = os.environ.get("MASH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
STORES = ["sqlite"]


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TrackingStore]:
    """Makes unopened stores that share one fresh backing database."""
    if request.param == "sqlite":
        path = str(tmp_path / "tracking.db")
        return lambda: SqliteStore(path)
    raise AssertionError(f"no store fixture for {request.param}")


@pytest.fixture
async def store(make_store: Callable[[], TrackingStore]) -> AsyncIterator[TrackingStore]:
    opened = make_store()
    await opened.open()
    yield opened
    await opened.close()


def _broker_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_admin() -> BrokerAdmin:
    if not _broker_reachable(AMQP_URL):
        pytest.skip(f"RabbitMQ is not reachable at {urlsplit(AMQP_URL).netloc.split('@')[-1]}")
    return asyncio.run(admin_for(AMQP_URL))


@pytest.fixture(scope="session")
def vhost(broker_admin: BrokerAdmin) -> Iterator[str]:
    """A fresh vhost where the test user may do everything; deleted after the session."""
    name = f"mash-test-{uuid.uuid4().hex[:8]}"
    user = urlsplit(AMQP_URL).username or "guest"
    asyncio.run(broker_admin.create_vhost(name, user))
    yield name
    asyncio.run(broker_admin.delete_vhost(name))


@pytest.fixture(scope="session")
def amqp_url(vhost: str) -> str:
    """The test user's URL for the session's vhost."""
    return vhost_url(AMQP_URL, vhost)


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    """The test user's robust connection to the session's vhost."""
    opened = await connect(amqp_url)
    yield opened
    await opened.close()


@pytest.fixture
async def channel(connection: AbstractRobustConnection) -> AbstractRobustChannel:
    return await confirmed_channel(connection)


@pytest.fixture
def agency_ids() -> Callable[[int], list[str]]:
    """Fresh agency ids, so each test's inboxes are its own within the shared vhost."""
    return lambda n: [f"t{uuid.uuid4().hex[:8]}-{i}" for i in range(n)]
