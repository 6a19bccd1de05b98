"""Connections to RabbitMQ that come back by themselves, and channels that confirm publishes.

connect_robust reconnects after a broker restart or a killed connection and
re-declares the channels, queues and consumers it opened, so a consumer is
never silently gone. A publish in flight during the outage still fails; the
caller retries it (publisher.py says how it failed).

No reconnect may hang: aio-pika bounds neither the restore of the channels
nor, unless told, the AMQP handshake, and a broker that accepts the
connection but never answers one of them would leave the service connected
to nothing for ever, logging nothing (tests/integration/test_reconnect_bounded.py
holds the answers back on purpose). The handshake has ``CONNECT_TIMEOUT_S``, the
restore ``RESTORE_TIMEOUT_S``; past either the attempt is dropped and the
next one follows. Each reconnect that restored every channel is logged
(``broker.reconnected``).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from gateway.config.broker_config import BrokerTls
from gateway.core.errors import GatewayError
from gateway.infra.tls import client_context

log = structlog.get_logger("gateway.broker.connection")

RECONNECT_INTERVAL_S = 1.0
CONNECT_TIMEOUT_S = 30.0  # the AMQP handshake, at start and on every reconnect
RESTORE_TIMEOUT_S = 60.0  # re-opening every channel, queue and consumer after a reconnect


class BrokerUnavailable(GatewayError):
    """RabbitMQ cannot be reached or refused the login; the message says how to fix it."""


DEFAULT_LOGIN = "guest"  # what aiormq logs in as when a URL names no user


def url_login(url: str) -> str:
    """The user a connection to ``url`` logs in as."""
    user = urlsplit(url).username
    return unquote(user) if user else DEFAULT_LOGIN


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path or '/'}"


def tls_context(tls: BrokerTls | None) -> ssl.SSLContext | None:
    """Our client rules (infra/tls.py) with the area's broker CA and, if set, its client pair."""
    if tls is None:
        return None
    context = client_context(tls.ca)
    if tls.cert is not None and tls.key is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


async def connect(url: str, tls: BrokerTls | None = None) -> AbstractRobustConnection:
    """A robust connection to ``url``; the first attempt must succeed, later losses heal.

    An ``amqps://`` URL is verified against ``tls`` (the area's ``[broker]``
    settings): the broker's certificate must chain to its CA and name its host.
    """
    try:
        context = tls_context(tls)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerUnavailable(
            f"broker TLS settings: cannot load a CA or client pair: {exc}"
        ) from exc
    try:
        connection = await aio_pika.connect_robust(
            url,
            reconnect_interval=RECONNECT_INTERVAL_S,
            ssl_context=context,
            timeout=CONNECT_TIMEOUT_S,
            connection_class=_BoundedRestore,
        )
    except (
        aio_pika.exceptions.ProbableAuthenticationError,
        aiormq.exceptions.InvalidFrameError,  # the broker closed the opening: no such vhost for it
    ) as exc:
        raise BrokerUnavailable(
            f"RabbitMQ at {safe_url(url)} refused the login or the vhost: check the user, "
            f"its password and its permissions on the vhost ({exc})"
        ) from exc
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        tls_problem = _tls_problem(exc)
        if tls_problem is not None:
            raise BrokerUnavailable(f"RabbitMQ at {safe_url(url)}: {tls_problem}") from exc
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {safe_url(url)}: {exc}. Start it with "
            "`docker compose up -d rabbitmq` or `sudo systemctl start rabbitmq-server`"
        ) from exc
    return connection


class _BoundedRestore(aio_pika.RobustConnection):
    """A robust connection whose restore of its channels after a reconnect is bounded."""

    async def _on_connected(self) -> None:
        where = safe_url(str(self.url))
        try:
            await asyncio.wait_for(super()._on_connected(), RESTORE_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "broker.restore_timeout",
                url=where,
                reason=f"channels not restored within {RESTORE_TIMEOUT_S:.0f} s; reconnecting",
            )
            if self.transport is not None:
                await self.transport.connection.close(ConnectionError("restore timed out"))
            raise ConnectionError("the channels' restore timed out") from None
        if self.connection_attempt > 1:  # counted by super(): a reconnect, every channel back
            log.info("broker.reconnected", url=where, attempt=self.connection_attempt)


def _tls_problem(exc: BaseException) -> str | None:
    """What went wrong in the TLS handshake, in words an operator can act on, if it was that.

    aiormq re-raises the handshake's ``ssl`` error as an AMQPConnectionError
    carrying its text, so the text is what there is to read.
    """
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip()
        return (
            f"presented a certificate we do not trust: {reason} "
            "(check [broker] ca, and that the URL's host is one the certificate names)"
        )
    if "SSL" in text or "TLS" in text:
        return (
            f"the TLS handshake failed: {text} (a broker that requires a client certificate "
            "needs [broker] cert and key)"
        )
    return None


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
