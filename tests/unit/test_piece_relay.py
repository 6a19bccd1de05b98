"""The router's piece relay: a forward whose confirm is lost is retried in place, not requeued.

Requeued at once, the piece would come straight back on the ingress channel
(restored before the router's publishing channel, after a broker restart) and
fail again until the ingress queue's delivery limit dead-lettered it, breaking
the transfer. The broker here is a fake exchange whose first publish fails as
a closing channel does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiormq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pamqp.commands import Basic

from gateway.broker import piece_headers
from gateway.core.envelope.pieces import MIN_PIECE_SIZE, Piece, sign_piece
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services.piece_relay import PieceRelay

pytestmark = pytest.mark.unit

KEY = Ed25519PrivateKey.generate()


class ClosingOnce:
    """An exchange whose channel closes under the first ``unconfirmed`` publishes."""

    name = "mash.deliver"

    def __init__(self, unconfirmed: int) -> None:
        self.unconfirmed = unconfirmed
        self.attempts = 0
        self.landed: list[tuple[str, bytes, dict[str, Any]]] = []

    async def publish(self, message: Any, routing_key: str, **_: Any) -> Basic.Ack:
        self.attempts += 1
        if self.attempts <= self.unconfirmed:
            raise aiormq.exceptions.ChannelInvalidStateError("the channel is closed")
        self.landed.append((routing_key, message.body, dict(message.headers)))
        return Basic.Ack()


class Router:
    """What the relay asks of the router: the transfer's record, the sender's key."""

    def __init__(self, record: MessageRecord) -> None:
        self.config = SimpleNamespace(
            registry=SimpleNamespace(verifying_key=lambda *_: KEY.public_key())
        )
        self.store = SimpleNamespace(message=self._message)
        self.cases = KeyedLocks()
        self.area = None
        self.refused: list[Any] = []
        self._record = record

    async def _message(self, message_id: str) -> MessageRecord | None:
        return self._record if message_id == self._record.message_id else None

    async def misbound(self, *_: Any) -> bool:
        return False

    async def refuse(self, plan: Any, *_: Any) -> None:
        self.refused.append(plan)


def transfer(recipients: tuple[str, ...]) -> tuple[MessageRecord, SimpleNamespace]:
    """A routed transfer's record, and the broker message of its one signed piece."""
    record = MessageRecord(
        message_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        in_reply_to=None,
        message_type="InformationRequest",
        sender="hub",
        recipients=recipients,
        rag=None,
        deadline=None,
        created_at=datetime(2026, 12, 2, tzinfo=UTC),
        state=State.ROUTED,
    )
    body = b"ciphertext of the attachment section"
    unsigned = Piece(record.message_id, "ab" * 32, 1, 1, MIN_PIECE_SIZE, b"")
    piece = Piece(
        record.message_id, "ab" * 32, 1, 1, MIN_PIECE_SIZE, sign_piece(KEY, unsigned, body)
    )
    message = SimpleNamespace(
        body=body,
        headers=piece_headers.encode(piece, "hub-signing-1"),
        correlation_id=record.correlation_id,
        user_id=None,
    )
    return record, message


async def test_an_unconfirmed_piece_forward_is_retried_in_place_until_each_inbox_has_it() -> None:
    record, message = transfer(("police", "health"))
    router = Router(record)
    deliver = ClosingOnce(unconfirmed=2)

    await PieceRelay(router).handle(message, SimpleNamespace(deliver=deliver, connection=None))

    assert [to for to, _, _ in deliver.landed] == ["police", "health"]
    assert all(body == message.body for _, body, _ in deliver.landed)
    assert all(headers == message.headers for _, _, headers in deliver.landed)
    assert deliver.attempts == 4  # two lost, then one each
    assert router.refused == []
