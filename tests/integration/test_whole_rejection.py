"""Rejection is whole: one full inbox among several recipients, and nobody gets the message.

A nack is a refusal only from a full or missing inbox: one from an inbox
with room (a quorum queue electing a leader after a node loss) is retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from structlog.testing import capture_logs

from gateway.broker import topology
from gateway.broker.connection import confirmed_channel
from gateway.broker.publisher import PublishRefused, publish
from gateway.broker.vhost import BrokerAdmin
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
SMALL = topology.Limits(inbox_max_length=5)


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path, limits=SMALL) as running:
        yield running


async def fill(exchange: Exchange, agency: str) -> int:
    """Publish filler to the agency's inbox until the broker refuses one; how many it took."""
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        deliver = await (await confirmed_channel(connection)).get_exchange(
            topology.DELIVER_EXCHANGE
        )
        for taken in range(SMALL.inbox_max_length + 2):
            try:
                await publish(deliver, b"filler", routing_key=agency, message_id=f"fill-{taken}")
            except PublishRefused:
                return taken
    raise AssertionError(f"the inbox of {agency} took more than its bound")


async def test_a_full_inbox_refuses_a_message_for_it_alone(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    assert await fill(exchange, "probation") >= SMALL.inbox_max_length

    refused = await hub.submit(Submission(REQUEST, ("probation",)))

    await eventually(lambda: told(exchange))
    (notice,) = exchange.inboxes["hub"].of_type("NonDelivery")
    assert b"<FailedCheck>inbox-unavailable</FailedCheck>" in notice.payload
    assert b"the inbox of probation is missing or full" in notice.payload
    record = await exchange.router_store.message(refused.message_id)
    assert record is not None and record.state is State.REJECTED


async def test_a_nack_from_an_inbox_with_room_is_retried_not_refused(exchange: Exchange) -> None:
    """The broker's bound made smaller than the router's: its nack comes from an inbox that,
    by the router's bound, has room, as a leaderless queue's nack does in a cluster."""
    hub = await exchange.edge("hub")
    inbox = topology.inbox_queue("probation")
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(inbox)
        small = await channel.declare_queue(
            inbox, durable=True, arguments=topology.bounded_quorum(delivery_limit=5, max_length=1)
        )
        await small.bind(topology.DELIVER_EXCHANGE, routing_key="probation")
    assert await fill(exchange, "probation") >= 1

    with capture_logs() as logs:
        sent = await hub.submit(Submission(REQUEST, ("probation",)))

        async def retrying() -> bool:
            return any(e["event"] == "inbox.nack_retried" for e in logs)

        await eventually(retrying)
    async with await aio_pika.connect(exchange.amqp_url) as connection:
        queue = await (await connection.channel()).get_queue(inbox, ensure=False)
        taken: list[str | None] = []

        async def taken_from_inbox() -> bool:  # the fillers first, which makes room
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                taken.append(message.message_id)
            return sent.message_id in taken

        await eventually(taken_from_inbox)
    assert taken.count(sent.message_id) == 1
    record = await exchange.router_store.message(sent.message_id)
    assert record is not None and record.state is State.ROUTED
    assert not await told(exchange)


async def told(exchange: Exchange) -> bool:
    return bool(exchange.inboxes["hub"].of_type("NonDelivery"))


async def test_a_full_inbox_among_several_recipients_rejects_the_message_for_all(
    exchange: Exchange,
) -> None:
    hub = await exchange.edge("hub")
    await exchange.edge("csc")
    await exchange.edge("health")  # probation has no edge: its inbox stays full
    assert await fill(exchange, "probation") >= SMALL.inbox_max_length
    store = exchange.router_store

    refused = await hub.submit(
        Submission(REQUEST, ("csc", "health", "probation"), correlation_id="CASE-FULL")
    )

    await eventually(lambda: told(exchange))
    (notice,) = exchange.inboxes["hub"].of_type("NonDelivery")
    assert b"<FailedCheck>inbox-unavailable</FailedCheck>" in notice.payload
    assert b"the inbox of probation is missing or full" in notice.payload
    record = await store.message(refused.message_id)
    assert record is not None and record.state is State.REJECTED

    # The same case is routed in order: once a later request to csc and health
    # has reached both, the refused one would have reached them before it.
    later = await hub.submit(Submission(REQUEST, ("csc", "health"), correlation_id="CASE-FULL"))

    async def both_have_it() -> bool:
        return all(
            any(
                m.header.fields.message_id == later.message_id for m in exchange.inboxes[a].messages
            )
            for a in ("csc", "health")
        )

    await eventually(both_have_it)
    for agency in ("csc", "health"):
        received = [m.header.fields.message_id for m in exchange.inboxes[agency].messages]
        assert received == [later.message_id], agency
