"""Bad transfers over real RabbitMQ: each piece fault is refused naming its check.

A transfer here is sealed and cut into 64 KiB pieces by hand, so a test can
drop, repeat, reorder, alter or splice pieces before they are published; the
router and the receiving edge are the real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.broker import piece_headers, topology
from gateway.broker.publisher import publish
from gateway.broker.vhost import BrokerAdmin
from gateway.core import schemas
from gateway.core.attachments import AttachmentLimits, with_manifest
from gateway.core.envelope import HeaderFields, recipient_keys
from gateway.core.envelope.pieces import Piece, piece_count, sign_piece
from gateway.core.envelope.streams import Chained, read_up_to
from gateway.core.resources import schemas_dir
from gateway.infra.clock import utc_now
from gateway.services.edge import Delivered, Edge
from gateway.services.transfer_sender import (
    AttachmentFile,
    checked_files,
    digest_files,
    seal_transfer,
)
from gateway.store.sqlite import SqliteStore
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import (
    BASES,
    PURPOSE,
    Exchange,
    eventually,
    running_exchange,
)

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
PIECE = 64 * 1024
SIZE = 3 * PIECE + 1000  # four pieces, the last short

Sent = list[tuple[Piece, bytes]]
Mutation = Callable[[Sent, Callable[[Piece, bytes], Piece]], Sent]


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


class Receiver:
    """Police's system: every message handed over, with its files read back."""

    def __init__(self) -> None:
        self.messages: list[Delivered] = []
        self.files: dict[str, list[bytes]] = {}

    async def __call__(self, delivered: Delivered) -> None:
        self.messages.append(delivered)
        self.files[delivered.header.fields.message_id] = [
            a.path.read_bytes() for a in delivered.attachments
        ]


async def police(exchange: Exchange, timeout: timedelta = timedelta(hours=6)) -> Receiver:
    config = dataclasses.replace(exchange.config, limits=AttachmentLimits(transfer_timeout=timeout))
    store = SqliteStore(str(exchange.tmp / "edge-police.db"))
    await store.open()
    edge = Edge(config, "police", store)
    await edge.__aenter__()
    exchange.edges["police"] = edge
    receiver = Receiver()
    await edge.consume(receiver, takes_attachments=True)
    return receiver


async def send(
    exchange: Exchange, tmp: Path, mutate: Mutation, content: bytes | None = None
) -> tuple[str, bytes]:
    """Seal a request from the hub with one file, cut it, ``mutate`` the pieces, publish them."""
    hub = await exchange.edge("hub")
    content = content if content is not None else os.urandom(SIZE)
    path = tmp / f"scan-{hashlib.sha256(content).hexdigest()[:8]}.png"
    path.write_bytes(content)
    checked = checked_files([AttachmentFile(path)], AttachmentLimits())
    facts = digest_files(checked)
    document = schemas.checked(REQUEST, "request.xml")
    named = with_manifest(document.root, facts, document.message_type, "request.xml")
    assert named is not None
    now = utc_now()
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        message_type="InformationRequest",
        sender="hub",
        recipients=("police",),
        created_at=now,
        purpose=PURPOSE,
        lawful_bases=BASES,
        rag="Amber",
        deadline=now + timedelta(days=1),
    )
    signer = hub.identity.signing.signer(hub.registry, now)
    keys = recipient_keys(hub.registry, ("police",), now)
    sealed = seal_transfer(fields, named, signer, keys, [(AttachmentFile(path), facts[0])])
    header = sealed.header
    count = piece_count(header.container_length - header.ciphertext_length, PIECE)
    sections = Chained(list(sealed.spools))

    def signed(piece: Piece, body: bytes) -> Piece:
        return dataclasses.replace(piece, signature=sign_piece(signer.private_key, piece, body))

    pieces: Sent = []
    for index in range(1, count + 1):
        body = read_up_to(sections, PIECE)  # type: ignore[arg-type]
        piece = Piece(fields.message_id, header.sha256, index, count, PIECE, b"")
        pieces.append((signed(piece, body), body))
    sealed.close()
    ids = {"message_id": fields.message_id, "correlation_id": fields.correlation_id}
    await publish(hub.ingress, sealed.head, routing_key=topology.INGRESS_ROUTING_KEY, **ids)
    for piece, body in mutate(pieces, signed):
        await publish(
            hub.ingress,
            body,
            routing_key=topology.INGRESS_ROUTING_KEY,
            headers=piece_headers.encode(piece, signer.key_id),
            message_type=piece_headers.PIECE_TYPE,
            **ids,
        )
    return fields.message_id, content


async def notice_to_hub(exchange: Exchange, message_id: str, kind: bytes) -> bytes:
    """The hub's NonDelivery or negative receipt about ``message_id``."""
    inbox = exchange.inboxes["hub"]

    def found() -> list[bytes]:
        return [
            m.payload
            for m in inbox.messages
            if m.header.fields.in_reply_to == message_id and kind in m.payload
        ]

    async def arrived() -> bool:
        return bool(found())

    await eventually(arrived, timeout=30)
    return found()[0]


async def test_reordered_and_repeated_pieces_arrive_once_byte_identical(
    exchange: Exchange, tmp_path: Path
) -> None:
    receiver = await police(exchange)

    def shuffle(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
        return [pieces[0], *reversed(pieces), pieces[2]]  # reversed, with two repeats

    message_id, content = await send(exchange, tmp_path, shuffle)

    async def handed_over() -> bool:
        return message_id in receiver.files

    await eventually(handed_over, timeout=30)
    assert receiver.files[message_id] == [content]
    receipt = await notice_to_hub(exchange, message_id, b"<Positive>")
    assert hashlib.sha256(content).hexdigest().encode() in receipt
    await asyncio.sleep(1)
    assert len(receiver.messages) == 1


def altered(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
    piece, body = pieces[1]
    return [pieces[0], (piece, body[:-1] + bytes([body[-1] ^ 1])), *pieces[2:]]


def extra(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
    last, _ = pieces[-1]
    more = dataclasses.replace(last, index=last.count + 1)
    return [*pieces, (signed(more, b"x"), b"x")]


async def test_the_router_refuses_an_altered_piece_with_a_non_delivery_naming_pieces(
    exchange: Exchange, tmp_path: Path
) -> None:
    receiver = await police(exchange)
    message_id, _ = await send(exchange, tmp_path, altered)
    notice = await notice_to_hub(exchange, message_id, b"<NonDelivery")
    assert b"<FailedCheck>pieces</FailedCheck>" in notice
    assert b"piece 2 of 4 does not verify" in notice
    assert receiver.messages == []  # it lacks a good piece 2: never handed over


async def test_an_extra_piece_is_refused_and_the_signed_ones_arrive_unchanged(
    exchange: Exchange, tmp_path: Path
) -> None:
    receiver = await police(exchange)
    message_id, content = await send(exchange, tmp_path, extra)
    notice = await notice_to_hub(exchange, message_id, b"<NonDelivery")
    assert b"<FailedCheck>pieces</FailedCheck>" in notice
    assert b"piece 5 of 4 is out of range" in notice

    async def handed_over() -> bool:
        return message_id in receiver.files

    await eventually(handed_over, timeout=30)
    assert receiver.files[message_id] == [content]


async def test_a_piece_spliced_from_another_transfer_is_refused_by_the_router(
    exchange: Exchange, tmp_path: Path
) -> None:
    receiver = await police(exchange)
    donor: Sent = []

    def keep(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
        donor.extend(pieces)
        return pieces[:1]  # the donor transfer stays incomplete

    await send(exchange, tmp_path, keep)

    def splice(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
        stolen, body = donor[1]
        relabelled = dataclasses.replace(stolen, message_id=pieces[1][0].message_id)
        return [pieces[0], (relabelled, body), *pieces[2:]]

    message_id, _ = await send(exchange, tmp_path, splice)
    notice = await notice_to_hub(exchange, message_id, b"<NonDelivery")
    assert b"<FailedCheck>pieces</FailedCheck>" in notice
    assert receiver.messages == []


def short(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
    """Signed by the sender, but the last piece lost bytes: the total differs from the header."""
    last, body = pieces[-1]
    return [*pieces[:-1], (signed(last, body[:-10]), body[:-10])]


def flipped(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
    """Signed by the sender, but not the bytes the header's digest names."""
    piece, body = pieces[1]
    body = body[:-1] + bytes([body[-1] ^ 1])
    return [pieces[0], (signed(piece, body), body), *pieces[2:]]


def recounted(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
    """One piece claims a different count than the rest: two plans for one transfer."""
    piece, body = pieces[1]
    other = dataclasses.replace(piece, count=piece.count + 1)
    return [pieces[0], (signed(other, body), body), *pieces[2:]]


@pytest.mark.parametrize(
    ("mutate", "check", "reason"),
    [
        (short, b"pieces", b"the header declares"),
        (flipped, b"segments", b"does not authenticate"),
        (recounted, b"pieces", b"another transfer"),
    ],
    ids=["size-mismatch", "digest-mismatch", "two-plans"],
)
async def test_the_receiving_edge_refuses_a_transfer_that_does_not_add_up(
    exchange: Exchange, tmp_path: Path, mutate: Mutation, check: bytes, reason: bytes
) -> None:
    receiver = await police(exchange)
    message_id, _ = await send(exchange, tmp_path, mutate)
    receipt = await notice_to_hub(exchange, message_id, b"<Negative>")
    assert b"<FailedCheck>" + check + b"</FailedCheck>" in receipt
    assert reason in receipt
    assert receiver.messages == []
    staged = exchange.config.base_dir / "state" / "transfers" / "police" / message_id
    assert not list(staged.glob("*.piece"))  # a refused transfer's pieces are gone


async def test_a_transfer_missing_a_piece_is_dropped_after_its_time_naming_the_piece(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Also the sender that dies halfway: nothing more arrives, and the transfer times out."""
    receiver = await police(exchange, timeout=timedelta(seconds=2))

    def drop_second(pieces: Sent, signed: Callable[[Piece, bytes], Piece]) -> Sent:
        return [pieces[0], *pieces[2:]]

    message_id, _ = await send(exchange, tmp_path, drop_second)
    receipt = await notice_to_hub(exchange, message_id, b"<Negative>")
    assert b"<FailedCheck>incomplete</FailedCheck>" in receipt
    assert b"missing piece 2 of 4" in receipt
    staged = exchange.config.base_dir / "state" / "transfers" / "police" / message_id
    assert not staged.exists()
    assert receiver.messages == []
