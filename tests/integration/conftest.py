"""Fixtures against real services: tracking stores, and a fresh RabbitMQ vhost per session.

The broker URL comes from $MASH_TEST_AMQP_URL (default: guest on 127.0.0.1).
Each session works in its own vhost ``mash-test-<uuid8>``, deleted at the end,
so parallel runs and other users of the broker do not see each other.

Store tests run against SQLite (a temp file) and PostgreSQL
($MASH_TEST_PG_URL, default the local ``test`` database), each PostgreSQL
test in a fresh schema ``mash_t_<uuid8>`` dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.vhost import BrokerAdmin, admin_for, vhost_url
from gateway.store import TrackingStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

AMQP_URL = os.environ.get("MASH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("MASH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ["sqlite", "postgres"]


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if not _reachable(PG_URL, 5432):
        pytest.skip(f"PostgreSQL is not reachable at {urlsplit(PG_URL).netloc.split('@')[-1]}")
    schema = f"mash_t_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}?search_path={schema}"
    asyncio.run(admin(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TrackingStore]:
    """Makes unopened stores that share one fresh backing database."""
    if request.param == "sqlite":
        path = str(tmp_path / "tracking.db")
        return lambda: SqliteStore(path)
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_schema_url")
        return lambda: PostgresStore(url)
    raise AssertionError(f"no store fixture for {request.param}")


@pytest.fixture
async def store(make_store: Callable[[], TrackingStore]) -> AsyncIterator[TrackingStore]:
    opened = make_store()
    await opened.open()
    yield opened
    await opened.close()


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_admin() -> BrokerAdmin:
    if not _reachable(AMQP_URL, 5672):
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
