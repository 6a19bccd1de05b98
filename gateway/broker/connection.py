"""Connections to RabbitMQ that come back by themselves, and channels that confirm publishes.

connect_robust reconnects after a broker restart or a killed connection and
re-declares the channels, queues and consumers it opened, so a consumer is
never silently gone. A publish in flight during the outage still fails; the
caller retries it (publisher.py says how it failed).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from gateway.core.errors import GatewayError

RECONNECT_INTERVAL_S = 1.0


class BrokerUnavailable(GatewayError):
    """RabbitMQ cannot be reached or refused the login; the message says how to fix it."""


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path or '/'}"


async def connect(url: str) -> AbstractRobustConnection:
    """A robust connection to ``url``; the first attempt must succeed, later losses heal."""
    try:
        return await aio_pika.connect_robust(url, reconnect_interval=RECONNECT_INTERVAL_S)
    except (
        aio_pika.exceptions.ProbableAuthenticationError,
        aiormq.exceptions.InvalidFrameError,  # the broker closed the opening: no such vhost for it
    ) as exc:
        raise BrokerUnavailable(
            f"RabbitMQ at {safe_url(url)} refused the login or the vhost: check the user, "
            f"its password and its permissions on the vhost ({exc})"
        ) from exc
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {safe_url(url)}: {exc}. Start it with "
            "`docker compose up -d rabbitmq` or `sudo systemctl start rabbitmq-server`"
        ) from exc


async def confirmed_channel(
    connection: AbstractRobustConnection, prefetch: int | None = None
) -> AbstractRobustChannel:
    """A channel with publisher confirms that raises on returns.

    ``prefetch`` bounds the unacked deliveries a consumer holds.
    """
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    if prefetch is not None:
        await channel.set_qos(prefetch_count=prefetch)
    return channel
