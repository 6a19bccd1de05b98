"""The claimed sender is bound to the broker login that published it (after `broker setup`).

Education's own login publishes envelopes in police's name: a genuine one
signed with police's key (as if captured), one signed by education under
police's name, and one published without naming its login. Each is
quarantined with its reason, police hears nothing, and the router warns and
counts; education's own message still flows. Nor may education's login
publish to police's own ingress at all: the broker refuses it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
from structlog.testing import capture_logs

from gateway.broker import topology
from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.credentials import agency_broker_url
from gateway.broker.publisher import PublishRefused, publish
from gateway.broker.vhost import BrokerAdmin
from gateway.config.area_config import AreaConfig
from gateway.core.envelope import HeaderFields, RecipientKey, seal_bytes
from gateway.core.envelope.container import encode_head, split_head
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services import metrics
from gateway.services.edge import Edge, Submission
from gateway.services.router import run_router
from gateway.store.sqlite import SqliteStore
from tests.integration.exchange_harness import BASES, PURPOSE, Inbox, eventually
from tests.integration.logins_harness import area_with_logins

pytestmark = pytest.mark.integration

EXAMPLES = schemas_dir() / "examples" / "valid"
REFERRAL = (EXAMPLES / "referral.xml").read_bytes()


@pytest.fixture(scope="module")
def area(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AreaConfig]:
    with area_with_logins(broker_admin, tmp_path_factory.mktemp("bound") / "area") as config:
        yield config


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "router.db"))
    await opened.open()
    yield opened
    await opened.close()


def in_police_name(config: AreaConfig, signed_by: str) -> tuple[str, bytes]:
    """A referral to the hub whose header says police; signed by ``signed_by``'s key."""
    now = utc_now()
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id="CASE-FORGED",
        message_type="Referral",
        sender=signed_by,
        recipients=("hub",),
        created_at=now,
        purpose=PURPOSE,
        lawful_bases=BASES,
    )
    key_id, public = config.registry.encryption_key("hub", now)
    signer = keystore.load_signing_identity(config, signed_by, now)
    sealed = seal_bytes(fields, REFERRAL, signer, [RecipientKey("hub", key_id, public)])
    if signed_by != "police":  # rename the sender in the signed header: the signature breaks
        head = split_head(sealed)
        header = head.header_bytes.replace(f'agency="{signed_by}"'.encode(), b'agency="police"', 1)
        sealed = encode_head(header, head.signature) + sealed[head.size :]
    return fields.message_id, sealed


async def quarantine_reasons(config: AreaConfig) -> dict[str, str]:
    connection = await aio_pika.connect(config.broker_url)  # the administrator
    async with connection:
        queue = await (await connection.channel()).get_queue(topology.QUARANTINE_QUEUE)
        found = {}  # read unacked: closing the connection puts them back
        while (message := await queue.get(fail=False)) is not None:
            found[str(message.message_id)] = str(message.headers[topology.QUARANTINE_REASON_HEADER])
        return found


def mismatches(agency: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mash_gateway_sender_login_mismatches_total", {"login_agency": agency}
    )
    return value or 0.0


async def test_a_login_publishing_in_another_agencys_name_is_quarantined_and_nobody_told(
    area: AreaConfig, store: SqliteStore, tmp_path: Path
) -> None:
    stop, ready = asyncio.Event(), asyncio.Event()
    router = asyncio.create_task(run_router(area, store, stop, ready))
    inboxes = {"police": Inbox(), "hub": Inbox()}
    before = mismatches("education")
    try:
        await asyncio.wait_for(ready.wait(), 15)
        edges = {a: Edge(area, a, SqliteStore(str(tmp_path / f"{a}.db"))) for a in inboxes}
        education = Edge(area, "education")
        for edge in edges.values():
            assert edge.store is not None
            await edge.store.open()
        async with edges["police"], edges["hub"], education:
            for agency, edge in edges.items():
                await edge.consume(inboxes[agency].handler)
            captured, genuine = in_police_name(area, "police")
            forged_id, forged = in_police_name(area, "education")
            with capture_logs() as logs:
                for message_id, body in ((captured, genuine), (forged_id, forged)):
                    await publish(
                        education.ingress,
                        body,
                        routing_key=topology.INGRESS_ROUTING_KEY,
                        message_id=message_id,
                    )
                unnamed_id, unnamed = in_police_name(area, "education")
                await education.ingress.publish(  # raw: no user_id
                    aio_pika.Message(unnamed, message_id=unnamed_id),
                    topology.INGRESS_ROUTING_KEY,
                )
                wanted = {captured, forged_id, unnamed_id}

                async def all_quarantined() -> bool:
                    return wanted <= set(await quarantine_reasons(area))

                await eventually(all_quarantined, timeout=20)
                own = await education.submit(Submission(REFERRAL, ("hub",)))

                async def own_arrived() -> bool:
                    return any(
                        m.header.fields.message_id == own.message_id
                        for m in inboxes["hub"].messages
                    )

                await eventually(own_arrived)
            reasons = await quarantine_reasons(area)
            login = f"{area.broker_user_prefix}education"
            for message_id in (captured, forged_id):
                assert reasons[message_id] == (
                    f"sender-login: published by broker login '{login}', which is not the "
                    f"claimed sender's ('{area.broker_user_prefix}police')"
                )
            assert reasons[unnamed_id] == (
                "sender-login: published without naming its broker login "
                "(the AMQP user_id property)"
            )
            warned = [e for e in logs if e["event"] == "message.sender_login_mismatch"]
            assert sorted(e["message_id"] for e in warned) == sorted(wanted)
            assert {e["log_level"] for e in warned} == {"warning"}
        assert inboxes["police"].messages == []  # no NonDelivery in police's name
        assert [m.header.fields.sender for m in inboxes["hub"].messages] == ["education"]
        assert mismatches("education") - before == 2  # the unnamed one has no login to name
        for message_id in wanted:
            assert await store.message(message_id) is None
        record = await store.message(own.message_id)
        assert record is not None and record.state in {State.ROUTED, State.DELIVERED}
    finally:
        stop.set()
        await router
        for edge in edges.values():
            assert edge.store is not None
            await edge.store.close()


async def test_a_login_may_not_publish_to_another_agencys_ingress(area: AreaConfig) -> None:
    connection = await connect(agency_broker_url(area, "education"))
    async with connection:
        channel = await confirmed_channel(connection)
        theirs = await channel.get_exchange(topology.ingress_exchange("police"), ensure=False)
        _, body = in_police_name(area, "education")
        with pytest.raises(PublishRefused, match="may not publish there"):
            await publish(theirs, body, routing_key=topology.INGRESS_ROUTING_KEY, message_id="m-x")
    admin = await aio_pika.connect(area.broker_url)
    async with admin:
        police = await (await admin.channel()).declare_queue(
            topology.ingress_queue("police"), passive=True
        )
        assert police.declaration_result.message_count == 0  # nothing reached police's queue
