"""Polls the broker's queue depths into the metrics: inboxes, consumers, ingress queues, quarantine.

A passive queue declare answers with the ready-message and consumer counts
without creating or changing anything, and needs no management plugin, so
the gauges work with any RabbitMQ the router can reach. It runs on its own
connection: a failed declare (a queue deleted by hand) closes the channel,
and must not take the router's channel with it. A failed poll is counted
and logged, and the next one starts afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aio_pika
import aiormq
import structlog

from gateway.broker import topology
from gateway.broker.connection import safe_url, tls_context
from gateway.config.broker_config import BrokerTls
from gateway.services import metrics

log = structlog.get_logger("gateway.services.queue_depths")

DEFAULT_INTERVAL_S = 15.0  # Prometheus scrapes every 15 s by default


async def poll_once(channel: aiormq.abc.AbstractChannel, agencies: Sequence[str]) -> None:
    """One passive declare per queue, then the gauges at once, so a scrape sees one poll."""

    async def depth(queue: str) -> tuple[int, int]:
        ok = await channel.queue_declare(queue, passive=True)
        return int(ok.message_count or 0), int(ok.consumer_count or 0)

    inboxes = {agency: await depth(topology.inbox_queue(agency)) for agency in agencies}
    ingresses = {agency: await depth(topology.ingress_queue(agency)) for agency in agencies}
    quarantine = (await depth(topology.QUARANTINE_QUEUE))[0]
    metrics.QUEUE_DEPTHS.latest = metrics.QueueDepths(quarantine, inboxes, ingresses)


async def watch(
    broker_url: str,
    agencies: Sequence[str],
    stop: asyncio.Event,
    interval: float = DEFAULT_INTERVAL_S,
    tls: BrokerTls | None = None,
) -> None:
    """Poll every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            connection = await aio_pika.connect(broker_url, ssl_context=tls_context(tls))
            async with connection:
                while not stop.is_set():
                    channel = await connection.channel()
                    async with channel:
                        await poll_once(await channel.get_underlay_channel(), agencies)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
        except (OSError, aio_pika.exceptions.AMQPError, aiormq.ChannelInvalidStateError) as exc:
            metrics.QUEUE_POLL_ERRORS.inc()
            log.warning("queue_depths.poll_failed", broker=safe_url(broker_url), reason=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


@asynccontextmanager
async def watching(
    broker_url: str,
    agencies: Sequence[str],
    interval: float = DEFAULT_INTERVAL_S,
    tls: BrokerTls | None = None,
) -> AsyncIterator[None]:
    """Poll in the background for the duration of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(watch(broker_url, agencies, stop, interval, tls))
    try:
        yield
    finally:
        stop.set()
        await task
