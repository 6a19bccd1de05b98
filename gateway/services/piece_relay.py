"""The router's side of a transfer: each piece checked as it passes and relayed, never opened.

A transfer's envelope message is routed like any other (router.py); its
pieces (gateway/core/envelope/pieces.py) come after it on the sender's
ingress queue and go to the same inboxes. For each piece the relay:
1. reads the transfer's record from the store (the first piece waits for the
   case's lock, so its envelope has been routed; the answer is kept for the
   transfer's later pieces);
2. verifies the piece's signature with the sender's registered key: the
   bytes are the sender's, for this message, at this place;
3. publishes it with confirms to each recipient's inbox, then acks.

Pieces go out on a confirmed channel of the relay's own (``PieceRelay.open``), so
a small message's publish does not wait on the router's channel behind megabytes
of pieces. A publish whose outcome is unknown (the channel closed while the
broker restarts) is retried in place, holding the piece, as the router does for
an envelope (router._to_inbox): requeued at once, it would come straight back on
the ingress channel, which may be restored first, and fail again until the
queue's delivery limit dead-lettered it. A nack from an inbox with room (a
quorum queue electing a leader) is retried on new channels within the
publisher's budget; from a full one, the piece is requeued.

Stateless apart from that cache, so a router killed mid-transfer resumes
with the next unacked piece: a piece relayed twice is kept once by the
receiving edge. A piece that fails its check is quarantined and the sender
gets a NonDelivery naming ``pieces`` (routing_plan.refused_piece); the
recipients' edges never hand over a transfer missing a good piece. Pieces
of a transfer refused as a whole (its envelope rejected) are dropped, logged:
the envelope is in quarantine with the reason and the sender was told. A
piece whose transfer the store does not know (yet) is returned to the
queue; past the queue's delivery limit RabbitMQ quarantines it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from datetime import datetime
from typing import Generic, Protocol, TypeVar

import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    FieldValue,
)

from gateway.broker import piece_headers, topology
from gateway.broker.connection import confirmed_channel
from gateway.broker.inbox_room import InboxRoom
from gateway.broker.publisher import (
    PublishNacked,
    Renew,
    fresh_exchanges,
    publish_until_confirmed,
)
from gateway.config.area_config import AreaConfig
from gateway.core import routing_plan
from gateway.core.envelope import EnvelopeError
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.envelope.pieces import Piece, verify_piece
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord
from gateway.core.registry import KeyRejected
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.store import TrackingStore

log = structlog.get_logger("gateway.services.piece_relay")

KNOWN_TRANSFERS = 256  # records kept; a transfer's pieces arrive together
# Pieces being published at once. Each costs about three times its size while its frames
# are built and sent; the channel's prefetch already keeps the sender's window busy.
RELAYING_AT_ONCE = 8
RELAYED_STATES = frozenset({State.ROUTED, State.DELIVERED, State.ANSWERED})


class Exchanges(Protocol):
    """The router's exchanges (router.RouterChannels): refusals go out through the router;
    pieces go out on ``deliver`` unless the relay has a channel of its own (``open``)."""

    @property
    def deliver(self) -> AbstractExchange: ...

    @property
    def room(self) -> InboxRoom: ...

    @property
    def connection(self) -> AbstractRobustConnection: ...


E = TypeVar("E", bound=Exchanges)
E_contra = TypeVar("E_contra", bound=Exchanges, contravariant=True)


class RouterShell(Protocol[E_contra]):
    """What the relay uses of the router (router.Router), which imports this module."""

    config: AreaConfig
    store: TrackingStore
    cases: KeyedLocks
    area: routing_plan.Area

    async def refuse(
        self, plan: routing_plan.Plan, body: bytes, exchanges: E_contra, now: datetime
    ) -> None: ...

    async def misbound(
        self,
        claimed: ClaimedFacts,
        login: str | None,
        body: bytes,
        exchanges: E_contra,
        now: datetime,
    ) -> bool: ...


async def _to_inbox(
    deliver: AbstractExchange,
    agency: str,
    record: MessageRecord,
    headers: dict[str, FieldValue],
    body: bytes,
    renew: Renew | None = None,
) -> None:
    """Publish until confirmed; with ``renew``, nacks too, each retry on a new channel."""
    await publish_until_confirmed(
        deliver,
        body,
        routing_key=agency,
        message_id=record.message_id,
        correlation_id=record.correlation_id,
        message_type=piece_headers.PIECE_TYPE,
        headers=headers,
        retry_nacked=renew is not None,
        renew=renew,
    )


class TransferUnknown(Exception):
    """The piece's transfer is not routed yet: the caller requeues the piece."""


class PieceRelay(Generic[E]):
    def __init__(self, router: RouterShell[E]) -> None:
        self.router = router
        self._known: OrderedDict[str, MessageRecord] = OrderedDict()
        self._relaying = asyncio.Semaphore(RELAYING_AT_ONCE)
        self._channel: AbstractRobustChannel | None = None
        self._deliver: AbstractExchange | None = None

    async def open(self, connection: AbstractRobustConnection) -> None:
        """Publish pieces on a confirmed channel of their own (held here: a robust
        connection keeps its channels only weakly, and restores only those alive)."""
        self._channel = await confirmed_channel(connection)
        self._deliver = await self._channel.get_exchange(topology.DELIVER_EXCHANGE)

    async def handle(self, message: AbstractIncomingMessage, exchanges: E) -> None:
        """Check and relay one piece; raises TransferUnknown to have it requeued."""
        now = utc_now()
        body = message.body
        try:
            piece, key_id = piece_headers.decode(message.headers)
        except piece_headers.BadPieceHeaders as exc:
            await self._refuse(None, "", str(exc), body, exchanges, now)
            return
        record = await self._record(piece.message_id, message.correlation_id)
        if record is None or record.state is State.SUBMITTED:
            raise TransferUnknown(f"transfer {piece.message_id} is not routed yet")
        if record.state not in RELAYED_STATES:
            log.info("piece.dropped", message_id=piece.message_id, state=record.state)
            return
        # A piece, like its envelope, must come from its sender's own login: another
        # agency's is quarantined, telling no one (core/sender_login.py).
        claim = ClaimedFacts(
            record.message_id, record.correlation_id, record.sender, record.message_type
        )
        if await self.router.misbound(claim, message.user_id, body, exchanges, now):
            return
        try:
            key = self.router.config.registry.verifying_key(
                key_id, record.sender, record.created_at
            )
            verify_piece(key, piece, body)
        except KeyRejected as exc:
            await self._refuse(
                record, piece.header_sha256, f"piece key: {exc}", body, exchanges, now
            )
            return
        except EnvelopeError as exc:
            await self._refuse(record, piece.header_sha256, str(exc), body, exchanges, now)
            return
        async with self._relaying:
            await self._relay(record, piece, key_id, body, exchanges)

    async def _relay(
        self, record: MessageRecord, piece: Piece, key_id: str, body: bytes, exchanges: E
    ) -> None:
        deliver = self._deliver or exchanges.deliver
        headers = piece_headers.encode(piece, key_id)
        for agency in record.recipients:
            try:
                await _to_inbox(deliver, agency, record, headers, body)
            except PublishNacked:
                if await exchanges.room.full(agency):
                    raise  # requeued: the inbox may drain before the delivery limit
                log.warning("piece.nack_retried", agency=agency, message_id=record.message_id)
                connection = exchanges.connection
                async with fresh_exchanges(connection, topology.DELIVER_EXCHANGE) as renew:
                    await _to_inbox(await renew(), agency, record, headers, body, renew)

    async def _record(self, message_id: str, correlation_id: str | None) -> MessageRecord | None:
        known = self._known.get(message_id)
        if known is not None:
            return known
        # The case's lock: a piece read after its envelope was delivered in the same batch
        # waits until that envelope's plan is carried out.
        async with self.router.cases.hold(correlation_id or message_id):
            record = await self.router.store.message(message_id)
        if record is not None and record.state in RELAYED_STATES:
            self._known[message_id] = record
            while len(self._known) > KNOWN_TRANSFERS:
                self._known.popitem(last=False)
        return record

    async def _refuse(
        self,
        record: MessageRecord | None,
        header_sha256: str,
        reason: str,
        body: bytes,
        exchanges: E,
        now: datetime,
    ) -> None:
        facts = (
            ClaimedFacts(
                record.message_id, record.correlation_id, record.sender, record.message_type
            )
            if record is not None
            else ClaimedFacts(f"piece-{hashlib.sha256(body).hexdigest()}", "", "", "Piece")
        )
        plan = routing_plan.refused_piece(
            facts, header_sha256, "pieces", reason, now, self.router.area
        )
        await self.router.refuse(plan, body, exchanges, now)
