"""A reconnect cannot hang: a broker that opens the connection but never restores a channel.

A TCP relay before the local RabbitMQ passes the AMQP opening, then, while
``holding``, keeps back everything the broker says after it, as a cluster
node does that takes the connection but cannot answer for its queues. The
robust connection drops that attempt after ``RESTORE_TIMEOUT_S`` and tries
again; once the relay passes everything, the consumer is back and says so
(``broker.reconnected``). Only the relay's own connections are cut, so the
shared broker is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from gateway.broker import connection as broker_connection
from gateway.broker.connection import connect
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.infra import logs
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import eventually

pytestmark = pytest.mark.integration

OPEN_OK = struct.pack(">HH", 10, 41)  # connection.open-ok: the opening is done
FRAME_END = 1  # the frame-end octet after each payload


@dataclass
class Relay:
    """Relays to the broker; while ``holding``, new connections hear nothing after their opening."""

    holding: bool = False
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def drop(self) -> None:
        """Cut every relayed connection, as a node's death does."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker = urlsplit(AMQP_URL)
        broker_r, broker_w = await asyncio.open_connection(broker.hostname, broker.port or 5672)
        self._writers += [client_w, broker_w]
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            await asyncio.gather(
                _pipe(client_r, client_w, broker_w), self._answers(broker_r, client_w, self.holding)
            )

    async def _answers(
        self, broker: asyncio.StreamReader, client: asyncio.StreamWriter, hold: bool
    ) -> None:
        """The broker's frames to the client, up to its open-ok when ``hold``; none after it."""
        opened = False
        while True:
            head = await broker.readexactly(7)
            kind, _, size = struct.unpack(">BHI", head)
            rest = await broker.readexactly(size + FRAME_END)
            if hold and opened:
                continue
            client.write(head + rest)
            await client.drain()
            opened = opened or (kind == 1 and rest[:4] == OPEN_OK)


async def _pipe(
    source: asyncio.StreamReader, source_w: asyncio.StreamWriter, sink: asyncio.StreamWriter
) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()
    source_w.close()


@pytest.fixture
async def relayed(broker_admin: BrokerAdmin) -> AsyncIterator[tuple[Relay, str]]:
    vhost = f"mash-relay-{uuid.uuid4().hex[:8]}"
    await broker_admin.create_vhost(vhost, "guest")
    relay = Relay()
    await relay.start()
    try:
        yield relay, vhost
    finally:
        await relay.stop()
        await broker_admin.delete_vhost(vhost)


async def test_a_reconnect_whose_restore_hangs_is_dropped_and_tried_again(
    relayed: tuple[Relay, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay, vhost = relayed
    monkeypatch.setattr(broker_connection, "RESTORE_TIMEOUT_S", 2.0)
    logs.configure(json=True)  # info and up: an earlier command here may have left warnings only
    connection = await connect(vhost_url(f"amqp://guest:guest@127.0.0.1:{relay.port}/", vhost))
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("restored", durable=True)
        received: list[bytes] = []

        async def take(message: AbstractIncomingMessage) -> None:
            received.append(message.body)
            await message.ack()

        await queue.consume(take)
        with capture_logs() as events:
            relay.holding = True
            relay.drop()

            async def logged(event: str) -> bool:
                return any(e["event"] == event for e in events)

            await eventually(lambda: logged("broker.restore_timeout"), timeout=60)
            relay.holding = False
            await eventually(lambda: logged("broker.reconnected"), timeout=60)

        direct = await aio_pika.connect(vhost_url(AMQP_URL, vhost))
        async with direct:
            await (await direct.channel()).default_exchange.publish(
                aio_pika.Message(b"after"), routing_key="restored"
            )

        async def consumed() -> bool:
            return received == [b"after"]

        await eventually(consumed, timeout=60)
