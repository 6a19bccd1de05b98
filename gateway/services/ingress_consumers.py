"""The router's consumers: one per agency's ingress queue, so one agency's flood delays only itself.

Design (issue 14, finding 6: fairness between agencies):
- Each agency's edges publish to its own exchange ``mash.ingress.<id>``,
  which only that agency's broker user (and the quarantine keeper's, for a
  release) may write to, into its own bounded quorum queue
  ``gateway.ingress.<id>`` (``[Limits] ingress_max_length``, 20,000,
  ``reject-publish``: gateway/broker/topology.py). A flood fills the
  flooder's own queue; at its bound the broker nacks the flooder's next
  publish, which the edge waits out within its retry budget and then
  reports (``PublishNacked``: "the queue is full"). Nothing already taken
  is lost: the queue keeps it for the router.
- The router consumes every ingress queue, each on a channel of its own
  with its own prefetch window of unacked messages (``basic.qos``). Another
  agency's next message is delivered at once, into its own empty window,
  and waits only behind the messages the router already holds (at most one
  window per flooding agency), never behind a flooder's backlog. A channel
  each also keeps a queue the router may not consume yet from closing the
  others' channel.
- A new agency in the signed area directory (directory_watch.py) gets its
  queue consumed without a restart: ``follow`` is called with the new
  agencies. On the administrator's URL (the demo, the tests) the router
  declared the queue just before; with its own least-privilege user it
  cannot, so until ``broker setup`` has declared the queue and granted the
  router read on it, ``follow`` finds it missing, logs that once, and
  ``retry`` tries again every ``RETRY_S``.
- The sender-login check is the router's, per message (core/sender_login.py);
  the broker's permissions are what make the queue an agency's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from gateway.broker import topology
from gateway.services import health

log = structlog.get_logger("gateway.services.ingress_consumers")

RETRY_S = 5.0

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


class IngressConsumers:
    """The router's consumer of each agency's ingress queue, each with its own prefetch window."""

    def __init__(
        self, connection: AbstractRobustConnection, prefetch: int, on_message: OnMessage
    ) -> None:
        self._connection = connection
        self._prefetch = prefetch
        self._on_message = on_message
        self._consuming: dict[str, tuple[AbstractRobustChannel, AbstractQueue, str]] = {}
        self._missing: set[str] = set()  # logged once each, until consumed
        self._following = asyncio.Lock()
        self._attached = asyncio.Event()  # set once the first follow has attached every consumer
        self._unready: list[Callable[[], None]] = []

    @property
    def queues(self) -> list[str]:
        return sorted(queue.name for _, queue, _ in self._consuming.values())

    async def follow(self, agencies: Iterable[str]) -> None:
        """Consume the ingress queue of each agency not consumed yet (one call at a time)."""
        async with self._following:
            for agency in agencies:
                if agency not in self._consuming:
                    await self._consume(agency)
        self._attached.set()

    async def retry(self, stop: asyncio.Event, agencies: Callable[[], Iterable[str]]) -> None:
        """Until ``stop``, ``follow(agencies())`` every ``RETRY_S``: a queue found missing
        (or an agency a SIGHUP reload added) is consumed once setup has made it."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), RETRY_S)
            except TimeoutError:
                await self.follow(agencies())

    async def cancel(self) -> None:
        """Stop every consumer: the messages in hand finish, nothing more is delivered."""
        for _, queue, tag in self._consuming.values():
            await queue.cancel(tag)
        self._consuming.clear()
        for remove in self._unready:
            remove()
        self._unready.clear()

    async def _in_turn(self, message: AbstractIncomingMessage) -> None:
        """Hold what arrives until every queue of the first ``follow`` has its consumer: after
        a restart on a backlog, the queue attached first must not take the router alone."""
        await self._attached.wait()
        await self._on_message(message)

    async def _consume(self, agency: str) -> None:
        name = topology.ingress_queue(agency)
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await channel.get_queue(name)  # passive: setup (or the router) declared it
            tag = await queue.consume(self._in_turn)
        except (
            aio_pika.exceptions.ChannelNotFoundEntity,  # not declared yet
            aiormq.exceptions.ChannelAccessRefused,  # declared, not yet the router's to read
        ) as exc:
            await channel.close()
            if agency not in self._missing:
                self._missing.add(agency)
                log.warning(
                    "router.ingress_missing",
                    queue=name,
                    reason=f"the router cannot consume {name} ({exc}): run `mash-gateway broker "
                    f"setup`; the router tries again every {RETRY_S:g} s",
                )
            return
        self._missing.discard(agency)
        self._consuming[agency] = (channel, queue, tag)
        self._unready.append(
            health.READINESS.add(
                f"consumer {name}", health.consuming(self._connection, channel, name)
            )
        )
        log.info("router.consuming", queue=name)
