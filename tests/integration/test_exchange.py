"""The exchange end to end on the real broker: routing, receipts, answers, and every refusal."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aio_pika
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.broker import topology
from gateway.broker.publisher import publish
from gateway.broker.vhost import BrokerAdmin
from gateway.cli import main
from gateway.core import schemas
from gateway.core.envelope import HeaderFields, RecipientKey, TimeWindow, seal_bytes
from gateway.core.envelope.container import encode_head, split_head
from gateway.core.envelope.protocol import HEADER_SIGNATURE_LABEL
from gateway.core.lifecycle import State
from gateway.core.payload_facts import HeaderPayloadMismatch
from gateway.core.registry import KeyUse, key_id_for
from gateway.core.resources import schemas_dir
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services.edge import PolicyRefusal, Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import (
    BASES,
    PURPOSE,
    Exchange,
    eventually,
    running_exchange,
)

pytestmark = pytest.mark.integration

EXAMPLES = schemas_dir() / "examples" / "valid"
REQUEST = (EXAMPLES / "information-request.xml").read_bytes()
RESPONSE = (EXAMPLES / "information-response.xml").read_bytes()
REFERRAL = (EXAMPLES / "referral.xml").read_bytes()


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


async def state_of(exchange: Exchange, message_id: str) -> State | None:
    record = await exchange.router_store.message(message_id)
    return record.state if record else None


async def reaches(exchange: Exchange, message_id: str, state: State) -> None:
    async def check() -> bool:
        return await state_of(exchange, message_id) is state

    await eventually(check)


def non_deliveries(exchange: Exchange, agency: str) -> list[bytes]:
    return [m.payload for m in exchange.inboxes[agency].of_type("NonDelivery")]


async def quarantined(exchange: Exchange) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.QUARANTINE_QUEUE, ensure=False)
        found = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            found.append(message)
        return found


async def test_request_is_delivered_receipted_and_answered(exchange: Exchange) -> None:
    hub, police = await exchange.edge("hub"), await exchange.edge("police")
    request = await hub.submit(Submission(REQUEST, ("police",), correlation_id="CASE-1"))
    await eventually(lambda: _has(exchange, "police", "InformationRequest"))
    delivered = exchange.inboxes["police"].of_type("InformationRequest")[0]
    assert delivered.payload == REQUEST
    assert (delivered.header.fields.rag, delivered.header.fields.purpose) == ("Amber", PURPOSE)
    assert delivered.header.fields.lawful_bases == ("uk-gdpr-9-2-g-dpa-sch1-18", "ca-2004-s11")
    assert delivered.header.fields.sender == "hub"
    await reaches(exchange, request.message_id, State.DELIVERED)
    await eventually(lambda: _has(exchange, "hub", "DeliveryReceipt"))
    receipt = exchange.inboxes["hub"].of_type("DeliveryReceipt")[0]
    assert receipt.header.fields.in_reply_to == request.message_id
    assert delivered.plaintext_sha256.encode() in receipt.payload

    response = await police.submit(
        Submission(RESPONSE, ("hub",), correlation_id="CASE-1", in_reply_to=request.message_id)
    )
    await eventually(lambda: _has(exchange, "hub", "InformationResponse"))
    await reaches(exchange, request.message_id, State.ANSWERED)
    await reaches(exchange, response.message_id, State.DELIVERED)
    states = [e.state for e in await exchange.router_store.timeline(request.message_id)]
    assert states == [State.SUBMITTED, State.ROUTED, State.DELIVERED, State.ANSWERED]


async def test_header_that_contradicts_the_payload_is_refused_before_sealing(
    exchange: Exchange,
) -> None:
    hub = await exchange.edge("hub")
    with pytest.raises(HeaderPayloadMismatch, match="RAG 'Red' differs from the payload's 'Amber'"):
        await hub.submit(Submission(REQUEST, ("police",), rag="Red"))
    with pytest.raises(HeaderPayloadMismatch, match="lawful bases cda-1998-s115 differ"):
        await hub.submit(Submission(REQUEST, ("police",), lawful_bases=("cda-1998-s115",)))


async def test_share_without_agreement_gets_a_non_delivery_and_is_quarantined(
    exchange: Exchange,
) -> None:
    police = await exchange.edge("police")
    await exchange.edge("education")
    sent = await police.submit(Submission(REFERRAL, ("education",)))
    await reaches(exchange, sent.message_id, State.REJECTED)
    await eventually(lambda: _has(exchange, "police", "NonDelivery"))
    (notice,) = non_deliveries(exchange, "police")
    assert b"<FailedCheck>policy</FailedCheck>" in notice
    assert b"no agreement lets police send Referral to education" in notice
    assert exchange.inboxes["education"].messages == []
    (held,) = await quarantined(exchange)
    assert held.message_id == sent.message_id
    assert str(held.headers[topology.QUARANTINE_REASON_HEADER]).startswith("policy:")


async def test_unknown_recipient_is_refused(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    fields = _fields(exchange, "hub", ("fire00",), "InformationRequest")
    stranger = X25519PrivateKey.generate().public_key()
    signer = keystore.load_signing_identity(exchange.config, "hub", utc_now())
    sealed = seal_bytes(
        fields,
        REQUEST,
        signer,
        [
            RecipientKey(
                "fire00",
                key_id_for("fire00", KeyUse.ENCRYPT, stranger.public_bytes_raw()),
                stranger,
            )
        ],
    )
    await publish(
        hub.ingress, sealed, routing_key=topology.INGRESS_ROUTING_KEY, message_id=fields.message_id
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    notice = non_deliveries(exchange, "hub")[0]
    assert b"<FailedCheck>unknown-recipient</FailedCheck>" in notice
    assert b"'fire00' is not a registered agency" in notice


async def test_tampered_signature_is_quarantined_with_a_non_delivery(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    fields = _fields(exchange, "hub", ("police",), "InformationRequest")
    sealed = bytearray(_seal(exchange, fields, REQUEST))
    header_end = 12 + int.from_bytes(sealed[8:12], "big")
    sealed[header_end + 5] ^= 0x01  # a byte of the signature
    await publish(
        hub.ingress,
        bytes(sealed),
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=fields.message_id,
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    assert b"<FailedCheck>signature</FailedCheck>" in non_deliveries(exchange, "hub")[0]
    (held,) = await quarantined(exchange)
    assert str(held.headers[topology.QUARANTINE_REASON_HEADER]).startswith("signature:")
    assert await state_of(exchange, fields.message_id) is None


async def test_undecodable_message_is_quarantined_never_dropped(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    await publish(
        hub.ingress,
        b"not an envelope at all",
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id="garbage-1",
    )
    held = await _quarantine_holds(exchange, 1)
    assert held[0].body == b"not an envelope at all"
    assert str(held[0].headers[topology.QUARANTINE_REASON_HEADER]).startswith("undecodable:")
    assert non_deliveries(exchange, "hub") == []


async def test_unknown_sender_is_quarantined_without_a_notice(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    sealed = _seal(exchange, _fields(exchange, "hub", ("police",), "InformationRequest"), REQUEST)
    head = split_head(sealed)
    stranger = head.header_bytes.replace(b'agency="hub"', b'agency="rogue"', 1)
    forged = encode_head(stranger, head.signature) + sealed[head.size :]
    await publish(
        hub.ingress, forged, routing_key=topology.INGRESS_ROUTING_KEY, message_id="forged-1"
    )
    held = await _quarantine_holds(exchange, 1)
    assert str(held[0].headers[topology.QUARANTINE_REASON_HEADER]).startswith("unknown-sender:")
    await asyncio.sleep(0.3)
    assert non_deliveries(exchange, "hub") == []


async def test_schema_invalid_header_signed_by_its_sender_gets_a_non_delivery(
    exchange: Exchange,
) -> None:
    hub = await exchange.edge("hub")
    fields = _fields(exchange, "hub", ("police",), "InformationRequest")
    sealed = _seal(exchange, fields, REQUEST)
    head = split_head(sealed)
    invalid = head.header_bytes.replace(
        b"<Purpose>child-safeguarding</Purpose>", b"<Purpose>curiosity</Purpose>", 1
    )
    signer = keystore.load_signing_identity(exchange.config, "hub", utc_now())
    resigned = signer.private_key.sign(HEADER_SIGNATURE_LABEL + invalid)
    await publish(
        hub.ingress,
        encode_head(invalid, resigned) + sealed[head.size :],
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=fields.message_id,
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    notice = non_deliveries(exchange, "hub")[0]
    assert b"<FailedCheck>header-schema</FailedCheck>" in notice and b"curiosity" in notice
    assert fields.message_id.encode() in notice


async def test_revoked_sender_key_is_refused(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    fields = _fields(exchange, "hub", ("police",), "InformationRequest")
    sealed = _seal(exchange, fields, REQUEST)
    hub_sign = exchange.config.registry.current_key("hub", KeyUse.SIGN, utc_now())
    assert (
        main(
            [
                "--config",
                str(exchange.config.path),
                "keys",
                "revoke",
                hub_sign.key_id,
                "--reason",
                "test: key compromised",
            ]
        )
        == 0
    )
    await exchange.restart_router()  # the router reads the registry at start-up
    await publish(
        hub.ingress, sealed, routing_key=topology.INGRESS_ROUTING_KEY, message_id=fields.message_id
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    notice = non_deliveries(exchange, "hub")[0]
    assert b"<FailedCheck>key</FailedCheck>" in notice and b"revoked" in notice


async def test_replayed_id_with_other_content_is_refused(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    await exchange.edge("police")
    first = _fields(exchange, "hub", ("police",), "InformationRequest")
    await publish(
        hub.ingress,
        _seal(exchange, first, REQUEST),
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=first.message_id,
    )
    await reaches(exchange, first.message_id, State.DELIVERED)
    again = HeaderFields(**{**first.__dict__, "correlation_id": "OTHER-CASE"})
    await publish(
        hub.ingress,
        _seal(exchange, again, REQUEST),
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=first.message_id,
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    assert b"<FailedCheck>replay</FailedCheck>" in non_deliveries(exchange, "hub")[0]
    assert len(exchange.inboxes["police"].of_type("InformationRequest")) == 1


async def test_duplicate_submission_reaches_the_handler_once(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    await exchange.edge("police")
    fields = _fields(exchange, "hub", ("police",), "InformationRequest")
    sealed = _seal(exchange, fields, REQUEST)
    for _ in range(3):
        await publish(
            hub.ingress,
            sealed,
            routing_key=topology.INGRESS_ROUTING_KEY,
            message_id=fields.message_id,
        )
    await reaches(exchange, fields.message_id, State.DELIVERED)
    await asyncio.sleep(0.5)
    assert len(exchange.inboxes["police"].of_type("InformationRequest")) == 1
    assert non_deliveries(exchange, "hub") == []


async def test_two_copies_racing_into_an_inbox_reach_the_handler_once(exchange: Exchange) -> None:
    await exchange.edge("police")
    fields = _fields(exchange, "hub", ("police",), "InformationRequest")
    sealed = _seal(exchange, fields, REQUEST)
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        deliver = await channel.get_exchange(topology.DELIVER_EXCHANGE, ensure=False)
        await asyncio.gather(
            *(
                publish(deliver, sealed, routing_key="police", message_id=fields.message_id)
                for _ in range(2)
            )
        )
    await eventually(lambda: _has(exchange, "police", "InformationRequest"))
    await asyncio.sleep(0.5)
    assert len(exchange.inboxes["police"].of_type("InformationRequest")) == 1


async def test_message_older_than_the_window_is_refused(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    await exchange.restart_router(TimeWindow(timedelta(seconds=1), timedelta(minutes=5)))
    stale = _fields(exchange, "hub", ("police",), "InformationRequest")
    sealed = _seal(exchange, stale, REQUEST)
    await asyncio.sleep(1.5)
    await publish(
        hub.ingress, sealed, routing_key=topology.INGRESS_ROUTING_KEY, message_id=stale.message_id
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    notice = non_deliveries(exchange, "hub")[0]
    assert b"<FailedCheck>timestamp</FailedCheck>" in notice and b"is older than" in notice


async def test_message_from_the_future_is_refused(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    future = _fields(
        exchange,
        "hub",
        ("police",),
        "InformationRequest",
        created_at=utc_now() + timedelta(hours=1),
    )
    await publish(
        hub.ingress,
        _seal(exchange, future, REQUEST),
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=future.message_id,
    )
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    notice = non_deliveries(exchange, "hub")[0]
    assert b"<FailedCheck>timestamp</FailedCheck>" in notice and b"in the future" in notice


async def test_schema_invalid_payload_reaches_the_sender_as_a_negative_receipt(
    exchange: Exchange,
) -> None:
    hub = await exchange.edge("hub")
    await exchange.edge("police")
    bad = REQUEST.replace(b"9434765870", b"9434765871")
    with pytest.raises(schemas.SchemaViolation):
        await hub.submit(Submission(bad, ("police",)))  # the edge refuses first
    fields = _fields(exchange, "hub", ("police",), "InformationRequest")
    await publish(
        hub.ingress,
        _seal(exchange, fields, bad),
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=fields.message_id,
    )
    await reaches(exchange, fields.message_id, State.REJECTED)
    await eventually(lambda: _has(exchange, "hub", "DeliveryReceipt"))
    receipt = exchange.inboxes["hub"].of_type("DeliveryReceipt")[0].payload
    assert b"<FailedCheck>payload-schema</FailedCheck>" in receipt
    assert b"9434765871" not in receipt  # the reason is redacted: no identifiers travel back
    assert exchange.inboxes["police"].messages == []


async def test_a_upn_outside_an_education_flow_is_refused_at_both_edges(
    exchange: Exchange,
) -> None:
    """The school's referral carries the child's UPN: police may not pass it on."""
    police = await exchange.edge("police")
    await exchange.edge("hub")
    with pytest.raises(PolicyRefusal, match=r"a UPN may travel only in education flows"):
        await police.submit(Submission(REFERRAL, ("hub",)))  # the sending edge refuses first
    fields = _fields(exchange, "police", ("hub",), "Referral")
    await publish(  # a sender that skips its edge's check meets the receiving edge's
        police.ingress,
        _seal(exchange, fields, REFERRAL),
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=fields.message_id,
    )
    await reaches(exchange, fields.message_id, State.REJECTED)
    await eventually(lambda: _has(exchange, "police", "DeliveryReceipt"))
    receipt = exchange.inboxes["police"].of_type("DeliveryReceipt")[0].payload
    assert b"<FailedCheck>policy</FailedCheck>" in receipt
    assert b"B801200005001" not in receipt  # the reason names the line, never the UPN
    assert exchange.inboxes["hub"].messages == []
    school = await exchange.edge("education")
    allowed = await school.submit(Submission(REFERRAL, ("hub",)))
    await reaches(exchange, allowed.message_id, State.DELIVERED)


async def test_poison_message_lands_in_quarantine_after_the_delivery_limit(
    exchange: Exchange,
) -> None:
    hub = await exchange.edge("hub")
    police = await exchange.edge("police", consume=False)
    attempts = 0

    async def failing(_: object) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("case system is down")

    await police.consume(failing)  # type: ignore[arg-type]
    sent = await hub.submit(Submission(REQUEST, ("police",)))

    async def dead_lettered() -> bool:
        return attempts >= topology.Limits().inbox_delivery_limit

    await eventually(dead_lettered, timeout=20)
    await asyncio.sleep(0.5)
    held = await quarantined(exchange)
    assert [m.message_id for m in held] == [sent.message_id]
    assert held[0].headers["x-death"][0]["reason"] == "delivery_limit"  # type: ignore[index]


async def test_message_for_a_deleted_inbox_gets_a_non_delivery(exchange: Exchange) -> None:
    hub = await exchange.edge("hub")
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(topology.inbox_queue("probation"))
    sent = await hub.submit(Submission(REQUEST, ("probation",)))
    await reaches(exchange, sent.message_id, State.REJECTED)
    await eventually(lambda: _has(exchange, "hub", "NonDelivery"))
    assert b"<FailedCheck>inbox-unavailable</FailedCheck>" in non_deliveries(exchange, "hub")[0]


async def _quarantine_holds(
    exchange: Exchange, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    held: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def enough() -> bool:
        held.extend(await quarantined(exchange))
        return len(held) >= count

    await eventually(enough)
    return held


async def _has(exchange: Exchange, agency: str, message_type: str) -> bool:
    return bool(exchange.inboxes[agency].of_type(message_type))


def _fields(
    exchange: Exchange,
    sender: str,
    recipients: tuple[str, ...],
    message_type: str,
    created_at: datetime | None = None,
) -> HeaderFields:
    return HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id="CASE-T",
        message_type=message_type,
        sender=sender,
        recipients=recipients,
        created_at=created_at or utc_now(),
        purpose=PURPOSE,
        lawful_bases=BASES,
    )


def _seal(exchange: Exchange, fields: HeaderFields, payload: bytes) -> bytes:
    now = utc_now()
    signer = keystore.load_signing_identity(exchange.config, fields.sender, now)
    keys = []
    for agency in fields.recipients:
        key_id, public = exchange.config.registry.encryption_key(agency, now)
        keys.append(RecipientKey(agency, key_id, public))
    return seal_bytes(fields, payload, signer, keys)
