"""The topology, publishing and permissions against the real RabbitMQ, in the session's vhost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from gateway.broker.connection import BrokerUnavailable, confirmed_channel, connect
from gateway.broker.definitions import agency_permissions, agency_user, definitions, password_hash
from gateway.broker.publisher import (
    PublishFailed,
    PublishNacked,
    publish,
    publish_until_confirmed,
)
from gateway.broker.topology import (
    DELIVER_EXCHANGE,
    INGRESS_ROUTING_KEY,
    QUARANTINE_QUEUE,
    Limits,
    TopologyMismatch,
    declare,
    inbox_queue,
    ingress_exchange,
    ingress_queue,
)
from gateway.broker.vhost import BrokerAdmin, Credentials, new_password, vhost_url

pytestmark = pytest.mark.integration

AgencyIds = Callable[[int], list[str]]


async def deliver(channel: AbstractRobustChannel, agency: str, message_id: str) -> None:
    exchange = await channel.get_exchange(DELIVER_EXCHANGE, ensure=False)
    await publish(exchange, b"sealed bytes", routing_key=agency, message_id=message_id)


async def get(queue: aio_pika.abc.AbstractQueue, timeout: float = 5) -> AbstractIncomingMessage:
    """The next message on ``queue``, waiting up to ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        message = await queue.get(no_ack=False, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message on {queue.name} within {timeout}s")


async def test_declare_twice_is_idempotent_and_routes_end_to_end(
    channel: AbstractRobustChannel, agency_ids: AgencyIds
) -> None:
    [agency] = agency_ids(1)
    await declare(channel, [agency], Limits())
    await declare(channel, [agency], Limits())

    ingress = await channel.get_exchange(ingress_exchange(agency), ensure=True)
    await publish(ingress, b"x", routing_key=INGRESS_ROUTING_KEY, message_id="m-ingress")
    router = await channel.get_queue(ingress_queue(agency), ensure=True)
    seen = await get(router)
    await seen.ack()
    assert seen.message_id == "m-ingress"
    assert seen.delivery_mode == aio_pika.DeliveryMode.PERSISTENT

    await deliver(channel, agency, "m-deliver")
    inbox = await channel.get_queue(inbox_queue(agency), ensure=True)
    got = await get(inbox)
    await got.ack()
    assert got.message_id == "m-deliver"


async def test_redeclaring_with_other_limits_is_refused_by_name(
    connection: AbstractRobustConnection, agency_ids: AgencyIds
) -> None:
    [agency] = agency_ids(1)
    await declare(await confirmed_channel(connection), [agency], Limits())
    with pytest.raises(TopologyMismatch, match=r"x-max-length.*inbox|inbox.*x-max-length"):
        await declare(await confirmed_channel(connection), [agency], Limits(inbox_max_length=7))


async def test_a_full_inbox_nacks_and_the_publisher_raises(
    channel: AbstractRobustChannel, agency_ids: AgencyIds
) -> None:
    [agency] = agency_ids(1)
    limit = 2
    await declare(channel, [agency], Limits(inbox_max_length=limit))
    accepted = 0
    with pytest.raises(PublishFailed, match=r"refused by the broker .*full"):
        # A quorum queue notices it is over its bound one message late.
        for i in range(limit + 2):
            await deliver(channel, agency, f"m-{i}")
            accepted += 1
    assert limit <= accepted <= limit + 1
    inbox = await channel.get_queue(inbox_queue(agency), ensure=False)
    held = 0
    while await inbox.get(no_ack=True, fail=False) is not None:
        held += 1
    assert held == accepted  # refused, never silently dropped


async def test_a_sender_that_retries_nacks_gets_in_once_the_queue_drains(
    channel: AbstractRobustChannel, agency_ids: AgencyIds
) -> None:
    """An edge's submit waits out a full (or leaderless) queue instead of failing at once."""
    [agency] = agency_ids(1)
    await declare(channel, [agency], Limits(inbox_max_length=1))
    deliver_exchange = await channel.get_exchange(DELIVER_EXCHANGE, ensure=False)
    for i in range(3):  # over the bound (a quorum queue notices one message late)
        with contextlib.suppress(PublishNacked):
            await publish(deliver_exchange, b"x", routing_key=agency, message_id=f"m-{i}")
    waiting = asyncio.create_task(
        publish_until_confirmed(
            deliver_exchange, b"late", routing_key=agency, message_id="m-late", retry_nacked=True
        )
    )
    await asyncio.sleep(1)
    assert not waiting.done()  # nacked, and trying again
    inbox = await channel.get_queue(inbox_queue(agency), ensure=False)
    taken = []
    while (message := await inbox.get(no_ack=True, fail=False)) is not None:
        taken.append(message.message_id)
    await asyncio.wait_for(waiting, 30)
    while (message := await inbox.get(no_ack=True, fail=False)) is not None:
        taken.append(message.message_id)
    assert taken.count("m-late") == 1


async def test_an_unroutable_message_raises(
    channel: AbstractRobustChannel, agency_ids: AgencyIds
) -> None:
    await declare(channel, agency_ids(1), Limits())
    with pytest.raises(PublishFailed, match="routing key 'nobody' was returned unroutable"):
        await deliver(channel, "nobody", "m-lost")


async def test_a_poison_message_lands_in_quarantine_with_its_reason(
    channel: AbstractRobustChannel, agency_ids: AgencyIds
) -> None:
    [agency] = agency_ids(1)
    limit = 2
    await declare(channel, [agency], Limits(inbox_delivery_limit=limit))
    message_id = f"m-poison-{uuid.uuid4().hex[:8]}"
    await deliver(channel, agency, message_id)
    inbox = await channel.get_queue(inbox_queue(agency), ensure=False)

    deliveries = 0
    while (message := await inbox.get(no_ack=False, fail=False)) is not None:
        deliveries += 1
        await message.reject(requeue=True)
    assert deliveries == limit + 1

    quarantine = await channel.get_queue(QUARANTINE_QUEUE, ensure=False)
    while True:
        dead = await get(quarantine)
        if dead.message_id == message_id:
            break
        await dead.nack(requeue=True)  # another test's; leave it
    await dead.ack()
    [death] = cast(list[dict[str, object]], dead.headers["x-death"])
    assert death["reason"] == "delivery_limit"
    assert death["queue"] == inbox_queue(agency)


@pytest.fixture
async def agency_logins(
    broker_admin: BrokerAdmin, vhost: str, agency_ids: AgencyIds
) -> AsyncIterator[dict[str, Credentials]]:
    issued = {}
    for agency in agency_ids(2):
        issued[agency] = Credentials(agency_user(agency, f"{vhost}-"), new_password())
        await broker_admin.add_user(issued[agency].user, issued[agency].password)
        await broker_admin.set_permissions(vhost, issued[agency].user, agency_permissions(agency))
    yield issued
    for credentials in issued.values():
        await broker_admin.delete_user(credentials.user)


async def test_an_agency_user_may_submit_and_read_its_own_inbox_only(
    channel: AbstractRobustChannel, amqp_url: str, agency_logins: dict[str, Credentials]
) -> None:
    own, other = sorted(agency_logins)
    await declare(channel, [own, other], Limits())
    await deliver(channel, own, "m-for-own")
    await deliver(channel, other, "m-for-other")
    vhost = urlsplit(amqp_url).path.lstrip("/")
    edge = await connect(vhost_url(amqp_url, vhost, agency_logins[own]))
    try:
        ingress = await (await confirmed_channel(edge)).get_exchange(
            ingress_exchange(own), ensure=False
        )
        await publish(ingress, b"x", routing_key=INGRESS_ROUTING_KEY, message_id="m-submitted")

        # A passive declare needs no configure permission, so the edge can look its inbox up.
        mine = await (await confirmed_channel(edge)).get_queue(inbox_queue(own), ensure=True)
        got = await get(mine)
        await got.ack()
        assert got.message_id == "m-for-own"

        refused = aiormq.exceptions.ChannelAccessRefused

        async def take(message: AbstractIncomingMessage) -> None:
            await message.ack()

        # A refusal closes the channel, so each attempt gets its own.
        theirs = await (await confirmed_channel(edge)).get_queue(inbox_queue(other), ensure=False)
        with pytest.raises(refused):
            await theirs.consume(take)
        theirs = await (await confirmed_channel(edge)).get_queue(inbox_queue(other), ensure=False)
        with pytest.raises(refused):
            await theirs.get(fail=False)

        for exchange, key in (
            (DELIVER_EXCHANGE, other),
            ("", inbox_queue(other)),
            (ingress_exchange(other), INGRESS_ROUTING_KEY),  # another agency's ingress
        ):
            target = await (await confirmed_channel(edge)).get_exchange(exchange, ensure=False)
            with pytest.raises(PublishFailed, match="may not publish there"):
                await publish(target, b"x", routing_key=key, message_id="m-forged")

        with pytest.raises(refused):
            await (await confirmed_channel(edge)).declare_queue("sneaky", durable=True)
    finally:
        await edge.close()


async def test_a_robust_consumer_keeps_receiving_after_its_connection_is_killed(
    connection: AbstractRobustConnection,
    broker_admin: BrokerAdmin,
    vhost: str,
    agency_ids: AgencyIds,
) -> None:
    [agency] = agency_ids(1)
    channel = await confirmed_channel(connection, prefetch=10)
    await declare(channel, [agency], Limits())
    received: asyncio.Queue[str | None] = asyncio.Queue()

    async def handle(message: AbstractIncomingMessage) -> None:
        await received.put(message.message_id)
        await message.ack()

    inbox = await channel.get_queue(inbox_queue(agency), ensure=True)
    await inbox.consume(handle)
    publisher = await confirmed_channel(connection)
    await deliver(publisher, agency, "m-before")
    assert await asyncio.wait_for(received.get(), 5) == "m-before"

    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    await broker_admin.close_connections(vhost, "test: broker-side connection kill")
    await asyncio.wait_for(reconnected.wait(), 15)
    await deliver(publisher, agency, "m-after")
    assert await asyncio.wait_for(received.get(), 10) == "m-after"


async def test_a_bad_password_is_reported_without_the_password(amqp_url: str) -> None:
    vhost = urlsplit(amqp_url).path.lstrip("/")
    bad = vhost_url(amqp_url, vhost, Credentials("guest", "not-the-password-42"))
    with pytest.raises(BrokerUnavailable, match="refused the login") as info:
        await connect(bad)
    assert "not-the-password-42" not in str(info.value)


def test_exported_definitions_import_and_their_hashes_log_in(
    broker_admin: BrokerAdmin,
) -> None:
    """RabbitMQ 3.10 accepts the file, and a user with an exported hash can log in."""
    tag = f"mash-test-defs-{uuid.uuid4().hex[:8]}"
    agencies = ["police", "health"]
    password = secrets.token_urlsafe(12)
    police = agency_user("police", f"{tag}-")
    doc = definitions(
        tag,
        "gateway",
        agencies,
        Limits(),
        f"{tag}-",
        password_hashes={police: password_hash(password, secrets.token_bytes(4))},
    )
    # rabbitmqctl reads the file as the rabbitmq user: it must be readable by others.
    path = Path(tempfile.mkdtemp(prefix="mash-defs-")) / "definitions.json"
    path.parent.chmod(0o755)
    path.write_text(json.dumps(doc))
    path.chmod(0o644)
    users = [u["name"] for u in doc["users"]]
    try:
        subprocess.run(["rabbitmqctl", "-q", "import_definitions", str(path)], check=True)
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", tag, "name", "type", "arguments"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert "agency.police.inbox\tquorum" in listed
        assert "gateway.ingress.police\tquorum" in listed
        subprocess.run(["rabbitmqctl", "-q", "authenticate_user", police, password], check=True)
        perms = subprocess.run(
            ["rabbitmqctl", "-q", "list_user_permissions", police],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert (
            r"^$	^mash\.ingress\.police$	^(?:agency\.police\.inbox|gateway\.directory)$"
            in perms
        )
    finally:
        asyncio.run(broker_admin.delete_vhost(tag))
        for user in users:
            asyncio.run(broker_admin.delete_user(user))
        shutil.rmtree(path.parent)
