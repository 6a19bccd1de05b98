"""Room in every recipient's inbox, checked before a fan-out publishes to any of them.

Why check first rather than publish and undo: a message in a queue cannot be
taken back, and RabbitMQ's ``reject-publish`` refuses per queue (even one
publish routed to several queues is nacked while the others keep it). So
the router asks first: a passive declare of each inbox gives its ready
messages, and a fan-out goes ahead only if every inbox has room for it.
A message to one recipient needs no check: the broker's own refusal is
already whole.

What the check counts, and what it cannot:
- its own fan-outs in flight: each holds a place in every inbox it checked,
  taken before the depths are read, until its publishes are confirmed, so
  two concurrent fan-outs cannot both take an inbox's last place;
- other publishers (single-recipient messages, the escalator, a second
  router) are not counted, so a fan-out is refused ``headroom`` messages
  before the bound (1% of it, at most ``MAX_HEADROOM``); only a burst
  larger than that between the check and the publish can still make the
  broker refuse a later copy, and the router then rejects the message as
  before, naming the inbox.
- RabbitMQ's count is of ready messages; messages an edge holds unacked
  (its prefetch, 32) are inside the same headroom.

A missing inbox is reported like a full one. The declares run on their own
channel: a failed one closes that channel, never the router's.

The same depth tells what a nack meant (``full``): a quorum queue nacks
when it is at its bound, but also while it has no leader after a cluster
node died (and, on a channel that met it so, for longer: publisher.py's
``fresh_exchanges``). Only the first is a refusal; the router waits out the
second (services/router.py).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection

from gateway.broker.topology import Limits, inbox_queue

MAX_HEADROOM = 64


def nack_means_full(depth: int | None, limits: Limits) -> bool:
    """Whether an inbox that nacked a publish is missing (``depth`` None) or at its bound.

    Otherwise the nack was transient: a quorum queue without a leader, whose
    depth RabbitMQ then reports as 0.
    """
    return depth is None or depth >= limits.inbox_max_length


def headroom(limits: Limits) -> int:
    """How far below the bound a fan-out stops: 1% of it, at most ``MAX_HEADROOM``."""
    return min(MAX_HEADROOM, limits.inbox_max_length // 100)


class InboxRoom:
    """Holds places in inboxes for the fan-outs this router has in flight."""

    def __init__(self, connection: AbstractConnection, limits: Limits) -> None:
        self._connection = connection
        self._limits = limits
        self._capacity = limits.inbox_max_length - headroom(limits)
        self._held: collections.Counter[str] = collections.Counter()
        self._channel: AbstractChannel | None = None

    @asynccontextmanager
    async def held(self, agencies: Sequence[str]) -> AsyncIterator[str | None]:
        """Hold a place in each inbox for the block; yields the first without room, if any.

        Yields None when every inbox has room: publish inside the block, and
        the places are given back once the publishes are confirmed. Else it
        yields the agency to name in the refusal: publish to none.
        """
        self._held.update(agencies)
        try:
            yield await self._lacking(agencies)
        finally:
            self._held.subtract(agencies)

    async def full(self, agency: str) -> bool:
        """After the agency's inbox nacked a publish: whether it is missing or at its bound."""
        return nack_means_full(await self._depth(agency), self._limits)

    async def _lacking(self, agencies: Sequence[str]) -> str | None:
        for agency in agencies:
            depth = await self._depth(agency)
            if depth is None or depth + self._held[agency] > self._capacity:
                return agency
        return None

    async def _depth(self, agency: str) -> int | None:
        """Ready messages in the agency's inbox; None when it does not exist."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=False)
        channel = await self._channel.get_underlay_channel()
        try:
            declared = await channel.queue_declare(inbox_queue(agency), passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            closed, self._channel = self._channel, None
            with contextlib.suppress(Exception):  # the broker closed it; keep it from reopening
                await closed.close()
            return None
        return int(declared.message_count or 0)
