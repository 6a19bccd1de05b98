"""The broker topology: its names, its plan, declaring it idempotently, and checking it.

The plan is pure data (``plan``), so the declaration and the exported
definitions (definitions.py) cannot drift apart.

Who declares it: ``mash-gateway broker setup``, as the broker's administrator.
A router logged in as its own least-privilege user may not (definitions.py
says why) and only checks it (``check``) at start-up; a router on the area's
broker URL as it is (the demo, the tests: an administrator in a fresh vhost)
declares it itself.

- Each agency has its own ingress: its edges publish to ``mash.ingress.<id>``
  (direct, routing key ``submit``), which feeds its own bounded quorum queue
  ``gateway.ingress.<id>``. The router consumes every one of them, each with
  its own prefetch window (RabbitMQ's per-consumer ``basic.qos``), so a flood
  from one agency fills only that agency's queue and waits behind itself:
  another agency's message is delivered to the router as soon as it arrives.
  An agency's user may write only to its own exchange, so it cannot fill
  another's queue (definitions.py).
- The router publishes to ``mash.deliver`` (direct, routing key = agency id),
  which feeds each quorum inbox ``agency.<id>.inbox``.
- ``mash.events`` (topic) carries escalations, notices and metrics events;
  subscribers bind their own queues.
- ``mash.quarantine`` (fanout) feeds ``gateway.quarantine``. The inboxes and
  the ingress queues dead-letter there, at least once, when a message is
  returned more than the delivery limit allows (a poison message then stops
  blocking the queue); RabbitMQ records why in the ``x-death`` header. The
  router also publishes its rejects there, naming the check in
  ``QUARANTINE_REASON_HEADER``. The quarantine queue has no limit: it never drops.
- Queues are bounded with ``reject-publish`` overflow: a full queue nacks new
  publishes, so the publisher learns at once instead of a message vanishing.
  A quorum queue notices the bound one message late, so it may hold
  max-length + 1. At-least-once dead-lettering requires this overflow mode.
- ``mash.directory`` (fanout, only the gateway principal may publish) feeds
  the stream ``gateway.directory``: every signed area directory published
  (core/area_directory.py). A stream keeps its messages for every reader, so
  each router and edge reads it from the start and keeps the newest version
  it can verify (services/directory_watch.py); read-only for agencies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, ExchangeType

from gateway.core.errors import GatewayError

INGRESS_ROUTING_KEY = "submit"
DELIVER_EXCHANGE = "mash.deliver"
EVENTS_EXCHANGE = "mash.events"
QUARANTINE_EXCHANGE = "mash.quarantine"
QUARANTINE_QUEUE = "gateway.quarantine"
QUARANTINE_REASON_HEADER = "x-mash-quarantine-reason"
DIRECTORY_EXCHANGE = "mash.directory"
DIRECTORY_QUEUE = "gateway.directory"
DIRECTORY_SIGNATURE_HEADER = "x-mash-signature"
DIRECTORY_MAX_BYTES = 64 * 1024 * 1024  # thousands of versions; the oldest go first

# The same pattern as AgencyId in schemas/common.xsd: safe in queue names and permission regexes.
AGENCY_ID = re.compile(r"[a-z][a-z0-9-]{1,31}")


class InvalidAgencyId(GatewayError):
    """An agency id that cannot name a queue or appear in a permission regex."""


class TopologyMismatch(GatewayError):
    """An existing exchange or queue was declared with other settings than the plan's."""


class TopologyMissing(GatewayError):
    """An exchange or queue of the plan does not exist: ``broker setup`` has not declared it."""


def checked_agency(agency: str) -> str:
    if not AGENCY_ID.fullmatch(agency):
        raise InvalidAgencyId(f"agency id {agency!r} does not match {AGENCY_ID.pattern}")
    return agency


def inbox_queue(agency: str) -> str:
    return f"agency.{checked_agency(agency)}.inbox"


def ingress_exchange(agency: str) -> str:
    """Where the agency's edges publish; only the agency's own user may write to it."""
    return f"mash.ingress.{checked_agency(agency)}"


def ingress_queue(agency: str) -> str:
    """The router's queue of the agency's submissions, bounded per agency."""
    return f"gateway.ingress.{checked_agency(agency)}"


@dataclass(frozen=True)
class Limits:
    """Queue bounds. RabbitMQ refuses to redeclare a queue with others: re-create it."""

    inbox_delivery_limit: int = 5
    inbox_max_length: int = 100_000
    ingress_delivery_limit: int = 5
    ingress_max_length: int = 20_000  # per agency: a flood fills its own queue only


@dataclass(frozen=True)
class Exchange:
    name: str
    type: ExchangeType


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: Mapping[str, str | int]


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class Plan:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]


def bounded_quorum(delivery_limit: int, max_length: int) -> dict[str, str | int]:
    """Arguments of a bounded quorum queue that quarantines its poison messages."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": QUARANTINE_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-max-length": max_length,
    }


def plan(agencies: Iterable[str], limits: Limits) -> Plan:
    """Everything the gateway declares for ``agencies``, in declaration order."""
    ids = sorted({checked_agency(a) for a in agencies})
    inboxes = [
        Queue(inbox_queue(a), bounded_quorum(limits.inbox_delivery_limit, limits.inbox_max_length))
        for a in ids
    ]
    ingresses = [
        Queue(
            ingress_queue(a),
            bounded_quorum(limits.ingress_delivery_limit, limits.ingress_max_length),
        )
        for a in ids
    ]
    return Plan(
        exchanges=(
            Exchange(QUARANTINE_EXCHANGE, ExchangeType.FANOUT),
            Exchange(DELIVER_EXCHANGE, ExchangeType.DIRECT),
            Exchange(EVENTS_EXCHANGE, ExchangeType.TOPIC),
            Exchange(DIRECTORY_EXCHANGE, ExchangeType.FANOUT),
            *(Exchange(ingress_exchange(a), ExchangeType.DIRECT) for a in ids),
        ),
        queues=(
            Queue(QUARANTINE_QUEUE, {"x-queue-type": "quorum"}),
            *ingresses,
            Queue(
                DIRECTORY_QUEUE,
                {"x-queue-type": "stream", "x-max-length-bytes": DIRECTORY_MAX_BYTES},
            ),
            *inboxes,
        ),
        bindings=(
            Binding(QUARANTINE_EXCHANGE, QUARANTINE_QUEUE, ""),
            *(Binding(ingress_exchange(a), ingress_queue(a), INGRESS_ROUTING_KEY) for a in ids),
            Binding(DIRECTORY_EXCHANGE, DIRECTORY_QUEUE, ""),
            *(Binding(DELIVER_EXCHANGE, inbox_queue(a), a) for a in ids),
        ),
    )


async def declare(channel: AbstractChannel, agencies: Iterable[str], limits: Limits) -> Plan:
    """Declare the plan for ``agencies``; repeating it with the same limits changes nothing."""
    wanted = plan(agencies, limits)
    try:
        for exchange in wanted.exchanges:
            await channel.declare_exchange(exchange.name, exchange.type, durable=True)
        queues = {
            queue.name: await channel.declare_queue(
                queue.name, durable=True, arguments=dict(queue.arguments)
            )
            for queue in wanted.queues
        }
        for binding in wanted.bindings:
            await queues[binding.queue].bind(binding.exchange, routing_key=binding.routing_key)
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        raise TopologyMismatch(
            f"RabbitMQ refused to redeclare part of the topology with the planned settings "
            f"({exc}); an existing queue keeps its arguments: drain and delete it, or restore "
            "the limits it was created with"
        ) from exc
    return wanted


async def check(channel: AbstractChannel, agencies: Iterable[str], limits: Limits) -> Plan:
    """Look up every exchange and queue of the plan passively: nothing is created or changed.

    A passive declare needs no permission, and tells only that a name exists,
    not its settings or bindings: ``broker setup`` declared those.
    """
    wanted = plan(agencies, limits)
    kind, name = "", ""
    try:
        for exchange in wanted.exchanges:
            kind, name = "exchange", exchange.name
            await channel.get_exchange(name, ensure=True)
        for queue in wanted.queues:
            kind, name = "queue", queue.name
            await channel.get_queue(name, ensure=True)
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        raise missing(kind, name, exc) from exc
    return wanted


def missing(kind: str, name: str, exc: Exception) -> TopologyMissing:
    """What a service started before the topology exists says, instead of a broker traceback."""
    return TopologyMissing(
        f"RabbitMQ has no {kind} {name!r} in this vhost: run `mash-gateway broker setup` "
        f"(it declares the topology and each agency's inbox), then start again ({exc})"
    )
