"""Publishing that either lands a message in a queue or raises: persistent, confirmed, mandatory.

A publish returns only after the broker has confirmed that every queue it
routed to holds the message. Anything else raises ``PublishFailed`` naming
the exchange, the routing key and the message id:
- returned: no queue matched (an unknown or deleted inbox);
- nacked: a queue refused it (a full ``reject-publish`` queue) or the broker
  could not store it;
- the channel closed first, or is closed while the robust connection
  reconnects: the outcome is unknown, so the caller retries the same bytes
  (``publish_until_confirmed``) and the receiver's idempotency (by message
  id and header digest) absorbs a duplicate.

Every message names the login that publishes it (the AMQP ``user_id``
property), which RabbitMQ checks against the connection's login, so a
consumer knows who published it: the router binds an ingress message's
claimed sender to it (gateway/core/sender_login.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    DeliveryMode,
    FieldValue,
)
from pamqp.commands import Basic

from gateway.broker.connection import url_login
from gateway.core.errors import GatewayError

RETRY_BUDGET_S = 60.0
RETRY_FIRST_PAUSE_S = 0.2
RETRY_MAX_PAUSE_S = 5.0


# What a publish, or a channel's opening, raises while the connection is down or reconnecting.
UNSETTLED = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,  # the channel closed: a reconnect is under way
    ConnectionError,
    TimeoutError,
)


class PublishFailed(GatewayError):
    """The broker did not take responsibility for a message; retrying may succeed."""


class PublishRefused(PublishFailed):
    """The broker answered no: unroutable, a full queue, or no permission. Retrying won't help."""


class PublishNacked(PublishRefused):
    """A queue could not take the message now: full (``reject-publish``), or without a leader
    while a cluster elects one after a node loss. A sender may wait and try again
    (``retry_nacked``); a router first asks the inbox's depth (inbox_room.InboxRoom.full)."""


async def publish(
    exchange: AbstractExchange,
    body: bytes,
    *,
    routing_key: str,
    message_id: str,
    headers: Mapping[str, FieldValue] | None = None,
    correlation_id: str | None = None,
    message_type: str | None = None,
    timestamp: datetime | None = None,
    content_type: str = "application/octet-stream",
    mandatory: bool = True,
    timeout: float | None = None,
) -> None:
    """Publish ``body`` persistently, as this connection's login, and wait for the broker's confirm.

    ``mandatory=False`` is for the events exchange only, where no subscriber
    is not an error.
    """
    where = f"message {message_id} to exchange {exchange.name!r} with routing key {routing_key!r}"
    try:
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            content_type=content_type,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            type=message_type,
            timestamp=timestamp,
            user_id=await _login(exchange),
        )
        confirmation = await exchange.publish(
            message, routing_key, mandatory=mandatory, timeout=timeout
        )
    except aiormq.exceptions.PublishError as exc:
        raise PublishRefused(f"{where} was returned unroutable: no queue is bound for it") from exc
    except aiormq.exceptions.ChannelAccessRefused as exc:
        raise PublishRefused(f"{where} was refused: this user may not publish there") from exc
    except aiormq.exceptions.DeliveryError as exc:
        raise PublishNacked(
            f"{where} was refused by the broker (nack): the queue is full or unavailable"
        ) from exc
    except UNSETTLED as exc:
        raise PublishFailed(f"{where} is unconfirmed, retry it: {exc!r}") from exc
    if not isinstance(confirmation, Basic.Ack):
        raise PublishFailed(
            f"{where} was not confirmed ({type(confirmation).__name__}): publish on a channel "
            "with publisher confirms and on_return_raises (connection.confirmed_channel)"
        )


async def _login(exchange: AbstractExchange) -> str | None:
    """The login of the exchange's connection (aio-pika's own exchanges know their channel)."""
    if not isinstance(exchange, aio_pika.Exchange):
        return None
    return url_login(str((await exchange.channel.get_underlay_channel()).connection.url))


async def publish_until_confirmed(
    exchange: AbstractExchange,
    body: bytes,
    *,
    routing_key: str,
    message_id: str,
    give_up_after: float = RETRY_BUDGET_S,
    retry_nacked: bool = False,
    renew: Renew | None = None,
    **properties: Any,
) -> None:
    """``publish``, retried with backoff while the outcome is unknown (a broker restart).

    A refusal (``PublishRefused``) is final and raised at once, except a nack
    when ``retry_nacked``; after ``give_up_after`` seconds the last failure
    is raised. With ``renew`` (``fresh_exchanges``), each retry publishes
    through a new channel.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    pause = RETRY_FIRST_PAUSE_S
    while True:
        try:
            await publish(
                exchange, body, routing_key=routing_key, message_id=message_id, **properties
            )
            return
        except PublishRefused as refused:
            if not (retry_nacked and isinstance(refused, PublishNacked)):
                raise
            if loop.time() + pause > deadline:
                raise
        except PublishFailed:
            if loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, RETRY_MAX_PAUSE_S)
        if renew is not None:
            # A failed renewal keeps the old channel, and the next try fails as the last did;
            # aio-pika raises RuntimeError for a channel asked of a connection mid-reconnect.
            with contextlib.suppress(*UNSETTLED, RuntimeError):
                exchange = await renew()


Renew = Callable[[], Awaitable[AbstractExchange]]


@asynccontextmanager
async def fresh_exchanges(connection: AbstractConnection, name: str) -> AsyncIterator[Renew]:
    """Yields a function that opens a new confirmed channel, closing the one it opened before,
    and returns the exchange ``name`` on it; the last channel is closed at the end.

    For a publish that a quorum queue nacked while a cluster lost a node: in
    RabbitMQ 3.10 a channel whose first publish to a quorum queue found the
    queue's recorded leader on a node that is down nacks every later publish
    to that queue until the node is back (its queue client keeps asking that
    node). A new channel asks the queue's leader as recorded now.
    """
    opened: list[AbstractChannel] = []

    async def close_opened() -> None:
        while opened:
            with contextlib.suppress(Exception):  # closed with its connection already
                await opened.pop().close()

    async def renew() -> AbstractExchange:
        await close_opened()
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        opened.append(channel)
        return await channel.get_exchange(name, ensure=False)

    try:
        yield renew
    finally:
        await close_opened()
