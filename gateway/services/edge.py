"""The edge client: what every adapter, the e-mail intake and the CLI use to talk to the exchange.

An edge holds one agency's private keys, read from disk when it starts and
again on ``reload`` (never per message), with the registry they were read
against; each unit of work (a submission, a received message) reads the
clock once and passes that instant down. ``submit`` checks a payload's
schema, seals it and publishes it to the agency's own ingress. ``consume`` takes the agency's
inbox: it opens each message (verify, decrypt, content signature), checks
the payload schema, hands it to the agency's handler, and then sends a signed
DeliveryReceipt back through the router. A message it cannot accept gets a
negative receipt naming the failed check and is rejected to quarantine; it is
never dropped.

A handler whose transport confirms delivery only later (MESH: once the
recipient's mailbox has downloaded the message) consumes with
``receipts_later``: the edge records the hand-over and acks, but sends no
receipt; the handler keeps the message's ``Receipting`` facts and calls
``receipt_later`` or ``refuse_later`` when its transport has said.

Exactly-once to the handler: a message is handed over only if the edge's
store has not recorded it as handled; it is recorded after the handler
returns, and the broker ack comes last. A crash between the handler's
durable write and that record is the only window for a repeat, so handlers
key their writes by message id (the inbox writer names files by it).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from structlog.contextvars import bound_contextvars

from gateway.broker import piece_headers, topology
from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.credentials import agency_broker_url
from gateway.broker.publisher import fresh_exchanges, publish_until_confirmed
from gateway.config.area_config import AreaConfig
from gateway.core import notices, schemas
from gateway.core.attachments import (
    AttachmentFacts,
    AttachmentRefused,
    check_received,
    manifest,
    with_manifest,
)
from gateway.core.envelope import (
    DecryptionIdentity,
    EnvelopeError,
    Header,
    HeaderFields,
    Opened,
    SigningKeys,
    open_bytes,
    recipient_keys,
    seal_bytes,
)
from gateway.core.envelope.claimed import claimed_header
from gateway.core.envelope.protocol import MAX_HEADER_BYTES
from gateway.core.errors import GatewayError
from gateway.core.payload_facts import PayloadFacts, header_facts, payload_facts
from gateway.core.registry import Registry
from gateway.core.schemas import SchemaViolation
from gateway.core.sharing import upn_refusal
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES
from gateway.core.xmlsafe import UnsafeXmlError
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services import health, metrics
from gateway.services.directory_watch import DirectoryWatch
from gateway.services.transfer_sender import (
    AttachmentFile,
    Progress,
    checked_files,
    digest_files,
    publish_transfer,
    seal_transfer,
)
from gateway.services.transfer_staging import PieceRefused, ReceivedAttachment, Staging, Stale
from gateway.store import HandledMarks

log = structlog.get_logger("gateway.services.edge")

# Envelope checks an edge reports in a negative receipt, as common.xsd FailedCheck values.
OPEN_CHECKS = {
    "recipient": "not-a-recipient",
    "segments": "segments",
    "content-signature": "content-signature",
    "ciphertext": "ciphertext",
    "signature": "signature",
    "key": "key",
    "key-scope": "key-scope",
    "header": "header-schema",
    "container": "undecodable",
}


def _announces_transfer(body: bytes) -> bool:
    """An envelope message whose header names attachment sections: its pieces follow.

    Most messages have none: a byte search spares them a second header parse (a header
    that names sections some other way fails ``open_bytes``, which refuses it).
    """
    if body.find(b"Attachment", 0, MAX_HEADER_BYTES + 64) == -1:
        return False
    header = claimed_header(body)
    return header is not None and bool(header.attachments)


class PolicyRefusal(GatewayError):
    """A payload this edge may not send in this flow (a UPN outside education); nothing is sent."""


class HandlerRefused(GatewayError):
    """Raised by a handler when the agency system will never take this message (a webhook
    that refused it or stayed down past its retry budget, a document it cannot map).

    The edge answers with a negative receipt (check ``handler``) and rejects
    the message to quarantine, instead of redelivering it.
    """


class HandOver(Enum):
    """How a hand-over to the agency's system ended, when it did not refuse the message."""

    DONE = "done"  # taken now, or recorded as taken before: receipt and ack
    RETRY = "retry"  # the handler failed: leave it for redelivery


@dataclass(frozen=True)
class Receipting:
    """What a receipt sent after the hand-over needs: ids, times and digests, never content."""

    message_id: str
    correlation_id: str
    sender: str
    message_type: str
    received_at: datetime
    ciphertext_sha256: str
    plaintext_sha256: str
    attachments: tuple[tuple[str, str], ...] = ()  # each file's (ciphertext, plaintext) SHA-256


@dataclass(frozen=True)
class Delivered:
    """An opened, verified, schema-valid message, as the agency system receives it."""

    header: Header
    payload: bytes
    plaintext_sha256: str
    ciphertext_sha256: str
    # The files that travelled with it, verified, waiting in the edge's staging folder
    # until the handler returns: a handler that keeps them moves or copies them.
    attachments: tuple[ReceivedAttachment, ...] = ()
    # For a handler that consumes with ``receipts_later``: what its receipt will need.
    receipting: Receipting | None = None


Handler = Callable[[Delivered], Awaitable[None]]


@dataclass(frozen=True)
class Submission:
    """What the agency states when it sends; the edge adds ids, time and keys."""

    # The canonical XML, or a CheckedDocument from a caller that has checked it
    # already (the e-mail intake, to answer its sender), which the edge trusts.
    payload: bytes | schemas.CheckedDocument
    recipients: tuple[str, ...]
    purpose: str | None = None  # taken from the payload when it states one
    lawful_bases: tuple[str, ...] = ()  # likewise
    correlation_id: str | None = None
    in_reply_to: str | None = None
    rag: str | None = None
    deadline: datetime | None = None
    source: str = "<submission>"
    # How the originator was authenticated (common.xsd Assurance): the e-mail
    # intake states pgp-verified or tls-only; everything else is edge-signed.
    assurance: str = "edge-signed"
    # Files that travel with the message (transfer_sender.py): the payload names them.
    attachments: tuple[AttachmentFile, ...] = ()


@dataclass(frozen=True)
class Identity:
    """What an edge loaded at start or on its last reload: one value, swapped whole.

    A unit of work takes it once, so a reload in the middle of a message
    never mixes one registry's checks with another's keys.
    """

    registry: Registry
    signing: SigningKeys
    decryption: DecryptionIdentity


class Edge:
    """One agency's connection to the exchange.

    ``store`` records which messages were handed over; only ``consume``
    needs it, so an edge that only sends is made without one. ``intake``: the
    secure-mail intake's sending edge for the agency, which signs with the
    intake's keys for it (only mail-borne assurance) and holds none of the
    agency's own keys, so it cannot open the agency's inbox.
    """

    def __init__(
        self,
        config: AreaConfig,
        agency: str,
        store: HandledMarks | None = None,
        broker_url: str | None = None,
        *,
        intake: bool = False,
    ) -> None:
        config.registry.agency(agency)
        self.config = config
        self.agency = agency
        self.store = store
        self.intake = intake
        self.broker_url = broker_url or agency_broker_url(config, agency)
        self.identity = self._identity(config)
        self._connection: AbstractRobustConnection | None = None
        self._directory: AbstractRobustConnection | None = None  # the directory stream's own
        self._directory_watch: DirectoryWatch | None = None  # held: it holds the stream channel
        self._channel: AbstractRobustChannel | None = None
        self._ingress: AbstractExchange | None = None
        self._handling = KeyedLocks()
        self._transfers = KeyedLocks()
        self._staging = Staging(config.base_dir / "state" / "transfers" / agency)
        self._sweeping: asyncio.Task[None] | None = None
        self.last_received = time.monotonic()  # a transfer's pieces count: it is not idle
        self.on_piece: Progress | None = None  # told (sent, count) as a transfer's pieces confirm
        self._unready: list[Callable[[], None]] = []  # removes its /readyz checks
        self._receipts_later = False  # set by ``consume``: the handler receipts, not the edge

    async def __aenter__(self) -> Edge:
        self._connection = await connect(self.broker_url, self.config.broker_tls)
        self._channel = await confirmed_channel(self._connection, prefetch=32)
        self._ingress = await self._channel.get_exchange(
            topology.ingress_exchange(self.agency), ensure=False
        )
        self._directory_watch = DirectoryWatch(self.config, self._apply_directory)
        self._directory = await self._directory_watch.start(self.broker_url, self.config.broker_tls)
        self._unready.append(
            health.READINESS.add(
                f"broker ({self.agency})", health.broker_connected(self._connection)
            )
        )
        return self

    async def _apply_directory(self, config: AreaConfig) -> None:
        try:
            self.reload(config)
        except GatewayError as exc:  # the registry applied; the keys could not be re-read
            log.error("edge.keys_reload_failed", agency=self.agency, reason=str(exc))

    async def __aexit__(self, *exc: object) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
        while self._unready:
            self._unready.pop()()
        for connection in (self._directory, self._connection):
            if connection is not None:
                await connection.close()

    @property
    def registry(self) -> Registry:
        """The registry as of the last (re)load: agencies, keys, revocations."""
        return self.identity.registry

    def reload(self, config: AreaConfig) -> None:
        """Take a re-read config: its registry at once, and the agency's private keys again.

        The registry decides which key signs each message, so a key it revokes
        signs nothing more from here on, and a successor found on disk takes
        over. If the private keys cannot be re-read (a file gone, a mode too
        open), the new registry still applies over the keys held before, and
        the error is raised for the caller to report.
        """
        held = self.identity
        self.config = config
        # The registry first, so that it applies even if the keys cannot be re-read.
        self.identity = Identity(config.registry, held.signing, held.decryption)
        self.identity = self._identity(config)

    def _identity(self, config: AreaConfig) -> Identity:
        """The registry and this edge's private keys, read from disk now."""
        signing = keystore.load_signing_keys(config, self.agency, utc_now(), intake=self.intake)
        decryption = (
            DecryptionIdentity(self.agency, {})
            if self.intake
            else keystore.load_decryption_identity(config, self.agency)
        )
        return Identity(config.registry, signing, decryption)

    @property
    def ingress(self) -> AbstractExchange:
        if self._ingress is None:
            raise RuntimeError("use the Edge as an async context manager")
        return self._ingress

    async def submit(self, submission: Submission) -> HeaderFields:
        """Check, seal and publish; returns the header fields (with the new message id).

        The schema check runs here unless the payload is a CheckedDocument, which only
        ``schemas.checked`` makes; the UPN policy and the payload facts run on every one.
        """
        document = (
            submission.payload
            if isinstance(submission.payload, schemas.CheckedDocument)
            else schemas.checked(submission.payload, submission.source)
        )
        files: list[tuple[AttachmentFile, AttachmentFacts]] = []
        if submission.attachments:
            checked = checked_files(submission.attachments, self.config.limits)
            digests = await asyncio.to_thread(digest_files, checked)
            named = with_manifest(document.root, digests, document.message_type, submission.source)
            if named is not None:
                document = schemas.checked(named, submission.source)
            files = [(file, fact) for (file, _, _), fact in zip(checked, digests, strict=True)]
        root, message_type = document.root, document.message_type
        identity = self.identity
        upn = upn_refusal(
            root, submission.source, self.agency, submission.recipients, identity.registry
        )
        if upn is not None:
            raise PolicyRefusal(upn)
        facts = header_facts(
            payload_facts(root),
            PayloadFacts(
                submission.purpose, submission.lawful_bases, submission.rag, submission.deadline
            ),
            submission.source,
        )
        now = utc_now()
        fields = HeaderFields(
            message_id=str(uuid.uuid4()),
            correlation_id=submission.correlation_id or str(uuid.uuid4()),
            message_type=message_type,
            sender=self.agency,
            recipients=submission.recipients,
            created_at=now,
            purpose=facts.purpose,
            lawful_bases=facts.lawful_bases,
            assurance=submission.assurance,
            in_reply_to=submission.in_reply_to,
            rag=facts.rag,
            deadline=facts.deadline,
        )
        with bound_contextvars(message_id=fields.message_id, correlation_id=fields.correlation_id):
            if files:
                await self._seal_and_send_transfer(identity, fields, document.xml, files)
            else:
                await self._seal_and_publish(identity, fields, document.xml)
        metrics.submitted(fields)
        log.info(
            "message.submitted",
            message_id=fields.message_id,
            correlation_id=fields.correlation_id,
            message_type=message_type,
            recipients=list(fields.recipients),
        )
        return fields

    async def _seal_and_publish(
        self, identity: Identity, fields: HeaderFields, payload: bytes
    ) -> None:
        """Seal with the key the registry names at the message's own time, then publish."""
        now = fields.created_at
        signer = identity.signing.signer(identity.registry, now)
        keys = recipient_keys(identity.registry, fields.recipients, now)
        with metrics.timed("seal"):
            sealed = seal_bytes(fields, payload, signer, keys)
        # The same bytes until confirmed: a retry after a lost confirm is a
        # repeat the router recognises by header digest, never a second message.
        # A nack (the router's queue full, or electing a leader after a cluster
        # node died) is waited out too, within the publisher's retry budget,
        # each retry on a new channel (publisher.fresh_exchanges says why).
        ingress, connection = self.ingress, self._connection
        assert connection is not None  # set with the ingress exchange in __aenter__
        async with fresh_exchanges(connection, topology.ingress_exchange(self.agency)) as renew:
            await publish_until_confirmed(
                ingress,
                sealed,
                retry_nacked=True,
                renew=renew,
                routing_key=topology.INGRESS_ROUTING_KEY,
                message_id=fields.message_id,
                correlation_id=fields.correlation_id,
                message_type=fields.message_type,
            )

    async def _seal_and_send_transfer(
        self,
        identity: Identity,
        fields: HeaderFields,
        payload: bytes,
        files: list[tuple[AttachmentFile, AttachmentFacts]],
    ) -> None:
        """Seal in a thread (files stream through disk spools), then the head and its pieces."""
        now = fields.created_at
        signer = identity.signing.signer(identity.registry, now)
        keys = recipient_keys(identity.registry, fields.recipients, now)
        with metrics.timed("seal"):
            sealed = await asyncio.to_thread(seal_transfer, fields, payload, signer, keys, files)
        try:
            await publish_transfer(self.ingress, sealed, signer, progress=self.on_piece)
        finally:
            sealed.close()

    async def consume(
        self, handler: Handler, takes_attachments: bool = False, receipts_later: bool = False
    ) -> tuple[AbstractQueue, str]:
        """Start consuming the inbox; returns the queue and consumer tag to cancel with.

        A handler that does not say it ``takes_attachments`` never gets a message
        with files: the edge refuses it (check ``handler``) rather than hand over
        half of what was sent. One that ``receipts_later`` gets no positive
        receipt sent for it: it calls ``receipt_later`` or ``refuse_later`` itself.
        """
        self._receipts_later = receipts_later
        if self._channel is None:
            raise RuntimeError("use the Edge as an async context manager")
        if self.intake:
            raise RuntimeError("the intake's sending edge holds no keys to open an inbox with")
        store = self.store
        if store is None:
            raise RuntimeError("an edge that consumes needs a store to record hand-overs")
        # A passive declare (not ensure=False) registers the queue with the robust
        # channel, so the consumer is restored after a broker restart.
        name = topology.inbox_queue(self.agency)
        try:
            queue = await self._channel.get_queue(name)
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:  # started before broker setup
            raise topology.missing("queue", name, exc) from exc

        async def on_message(message: AbstractIncomingMessage) -> None:
            self.last_received = time.monotonic()
            # Set by the router from the verified header: the ids of every line logged meanwhile.
            ids = {"message_id": message.message_id, "correlation_id": message.correlation_id}
            with bound_contextvars(**ids):
                if piece_headers.is_piece(message.headers) or _announces_transfer(message.body):
                    await self._receive_transfer(message, handler, store, takes_attachments)
                else:
                    await self._receive(message, handler, store)

        tag = await queue.consume(on_message)
        if self._sweeping is None:
            self._sweeping = asyncio.create_task(self._sweep_transfers())
        if self._connection is not None:
            attached = health.consuming(self._connection, self._channel, name)
            self._unready.append(health.READINESS.add(f"consumer {name}", attached))
        return queue, tag

    async def _receive(
        self, message: AbstractIncomingMessage, handler: Handler, store: HandledMarks
    ) -> None:
        received_at = utc_now()
        identity = self.identity
        body = message.body
        try:
            with metrics.timed("open"):
                opened, payload = open_bytes(
                    body, identity.registry, identity.decryption, received_at, None, None
                )
        except EnvelopeError as exc:
            check = OPEN_CHECKS.get(exc.check, "undecodable")
            await self._refuse(identity, message, body, check, str(exc), received_at)
            return
        await self._accept(
            identity, message, body, opened, payload, (), handler, store, received_at
        )

    async def _accept(
        self,
        identity: Identity,
        message: AbstractIncomingMessage,
        body: bytes,
        opened: Opened,
        payload: bytes,
        files: Sequence[Path],
        handler: Handler,
        store: HandledMarks,
        received_at: datetime,
    ) -> bool:
        """Check the opened payload (and its files), hand it over, receipt it; True once acked."""
        fields = opened.header.fields
        source = f"message {fields.message_id}"
        try:
            root = schemas.validate(payload, source, fields.message_type)
        except SchemaViolation as exc:
            await self._refuse(
                identity, message, body, "payload-schema", exc.redacted(), received_at
            )
            return False
        except UnsafeXmlError as exc:
            await self._refuse(identity, message, body, "undecodable", str(exc), received_at)
            return False
        upn = upn_refusal(root, source, fields.sender, (self.agency,), identity.registry)
        if upn is not None:
            await self._refuse(identity, message, body, "policy", upn, received_at)
            return False
        named = manifest(root)
        try:
            received = [(a.plaintext_length, a.plaintext_sha256) for a in opened.attachments]
            if received:
                check_received(named, received, fields.message_id)
        except AttachmentRefused as exc:
            await self._refuse(identity, message, body, exc.check, str(exc), received_at)
            return False
        receipting = Receipting(
            fields.message_id,
            fields.correlation_id,
            fields.sender,
            fields.message_type,
            received_at,
            opened.ciphertext_sha256,
            opened.plaintext_sha256,
            tuple((a.ciphertext_sha256, a.plaintext_sha256) for a in opened.attachments),
        )
        delivered = Delivered(
            opened.header,
            payload,
            opened.plaintext_sha256,
            opened.ciphertext_sha256,
            tuple(
                ReceivedAttachment(facts, path) for facts, path in zip(named, files, strict=False)
            ),
            receipting,
        )
        # Shielded: closing a channel (the broker went away) cancels its consumer tasks,
        # and a hand-over cancelled after the agency's system took the message but before
        # it was recorded would hand the redelivered copy over a second time.
        outcome = await asyncio.shield(self._hand_over(delivered, handler, store))
        if isinstance(outcome, HandlerRefused):
            await self._refuse(identity, message, body, "handler", str(outcome), received_at)
            return False
        if outcome is HandOver.RETRY:
            # The agency system did not take it: redeliver later; past the
            # inbox's delivery limit RabbitMQ quarantines it.
            await message.nack(requeue=True)
            return False
        if not self._receipts_later:
            # The hand-over is a second event, which the receipt dates: a webhook
            # may have taken minutes of retries since the message was received.
            await self._receipt(identity, receipting, utc_now())
        await message.ack()
        return True

    async def receipt_later(self, about: Receipting, handed_over_at: datetime) -> None:
        """The positive receipt of a message handed over with ``receipts_later``, now delivered."""
        await self._receipt(self.identity, about, handed_over_at)

    async def refuse_later(self, about: Receipting, check: str, reason: str, at: datetime) -> None:
        """The negative receipt of a message handed over with ``receipts_later`` that its
        transport could not deliver after all (e.g. a MESH non-delivery report)."""
        if about.message_type in SYSTEM_MESSAGE_TYPES:
            return
        log.warning("message.undelivered", message_id=about.message_id, check=check)
        receipt = notices.negative_receipt(
            about.message_id, self.agency, about.received_at, about.ciphertext_sha256, check, reason
        )
        await self._send_receipt(self.identity, about, receipt, "negative", check, at)

    async def _receipt(
        self, identity: Identity, about: Receipting, handed_over_at: datetime
    ) -> None:
        if about.message_type in SYSTEM_MESSAGE_TYPES:
            return  # nobody receipts a receipt, a NonDelivery or an Escalation
        receipt = notices.positive_receipt(
            about.message_id,
            self.agency,
            about.received_at,
            about.ciphertext_sha256,
            about.plaintext_sha256,
            handed_over_at,
            about.attachments,
        )
        await self._send_receipt(identity, about, receipt, "positive", None, handed_over_at)

    async def _receive_transfer(
        self,
        message: AbstractIncomingMessage,
        handler: Handler,
        store: HandledMarks,
        takes_attachments: bool,
    ) -> None:
        """Stage the envelope or a piece; once all are on disk, open, check and hand over.

        Each staged broker message is acked once its file is durable; the one that
        completes the set is acked only after the hand-over (transfer_staging.py).
        """
        received_at = utc_now()
        identity = self.identity
        staging = self._staging
        try:
            if piece_headers.is_piece(message.headers):
                piece, _ = piece_headers.decode(message.headers)
                transfer = piece.message_id
                stage = functools.partial(staging.stage_piece, piece, message.body)
            else:
                header = claimed_header(message.body)
                transfer = header.fields.message_id if header is not None else ""
                stage = functools.partial(staging.stage_envelope, transfer, message.body)
            staging.folder(transfer)
        except (piece_headers.BadPieceHeaders, PieceRefused) as exc:
            log.warning("piece.refused", reason=str(exc))
            metrics.refused_at_edge("pieces")
            await message.reject(requeue=False)
            return
        async with self._transfers.hold(transfer):
            if await asyncio.to_thread(staging.is_refused, transfer):
                await message.ack()  # the transfer was refused as a whole; its sender was told
                return
            try:
                await asyncio.to_thread(stage)
            except PieceRefused as exc:
                log.warning("piece.refused", reason=str(exc))
                metrics.refused_at_edge("pieces")
                await asyncio.to_thread(staging.mark_refused, transfer, str(exc))
                envelope = await asyncio.to_thread(staging.envelope, transfer)
                if envelope is None:
                    await message.reject(requeue=False)
                else:
                    await self._refuse(identity, message, envelope, "pieces", str(exc), received_at)
                return
            if not await asyncio.to_thread(staging.complete, transfer):
                await message.ack()
                return
            await self._complete_transfer(
                identity, message, transfer, handler, store, takes_attachments, received_at
            )

    async def _complete_transfer(
        self,
        identity: Identity,
        message: AbstractIncomingMessage,
        transfer: str,
        handler: Handler,
        store: HandledMarks,
        takes_attachments: bool,
        received_at: datetime,
    ) -> None:
        staging = self._staging
        envelope = await asyncio.to_thread(staging.envelope, transfer) or b""
        try:
            with metrics.timed("open"):
                opened, payload, files = await asyncio.to_thread(
                    staging.open_transfer,
                    transfer,
                    identity.registry,
                    identity.decryption,
                    received_at,
                )
        except EnvelopeError as exc:
            check = (
                exc.check if exc.check == "pieces" else OPEN_CHECKS.get(exc.check, "undecodable")
            )
            await asyncio.to_thread(staging.mark_refused, transfer, str(exc))
            await self._refuse(identity, message, envelope, check, str(exc), received_at)
            return
        if not takes_attachments:
            reason = "this agency's system takes no attachments (its adapter cannot carry them yet)"
            await asyncio.to_thread(staging.mark_refused, transfer, reason)
            await self._refuse(identity, message, envelope, "handler", reason, received_at)
            return
        done = await self._accept(
            identity, message, envelope, opened, payload, files, handler, store, received_at
        )
        if done:  # otherwise left for the redelivery of the message that completed it
            await asyncio.to_thread(staging.remove, transfer)

    async def _sweep_transfers(self) -> None:
        """Drop transfers past ``[limits] transfer_timeout``; each sender learns what is missing."""
        timeout_s = self.config.limits.transfer_timeout.total_seconds()
        while True:
            await asyncio.sleep(min(60.0, max(1.0, timeout_s / 4)))
            for stale in await asyncio.to_thread(self._staging.stale, timeout_s):
                await self._drop_stale(stale)

    async def _drop_stale(self, stale: Stale) -> None:
        identity = self.identity
        now = utc_now()
        async with self._transfers.hold(stale.message_id):
            header = stale.header
            if header is not None and stale.missing:
                reason = (
                    f"transfer {stale.message_id} incomplete after "
                    f"{self.config.limits.transfer_timeout}: missing {stale.missing}"
                )
                log.warning(
                    "transfer.incomplete", message_id=stale.message_id, missing=stale.missing
                )
                metrics.refused_at_edge("incomplete")
                if header.fields.message_type not in SYSTEM_MESSAGE_TYPES:
                    receipt = notices.negative_receipt(
                        stale.message_id,
                        self.agency,
                        now,
                        header.ciphertext_sha256,
                        "incomplete",
                        reason,
                    )
                    await self._send_receipt(
                        identity, header.fields, receipt, "negative", "incomplete", now
                    )
            await asyncio.to_thread(self._staging.remove, stale.message_id)

    async def _hand_over(
        self, delivered: Delivered, handler: Handler, store: HandledMarks
    ) -> HandOver | HandlerRefused:
        """Give the message to the agency's system once, and record that it did."""
        message_id = delivered.header.fields.message_id
        async with self._handling.hold(message_id):  # a concurrent copy waits here
            if await store.was_handled(self.agency, message_id):
                log.info("redelivery.not_handed_over", message_id=message_id)
                return HandOver.DONE
            try:
                await handler(delivered)
            except HandlerRefused as exc:
                return exc
            except Exception:
                log.exception("handler.failed", message_id=message_id)
                return HandOver.RETRY
            await store.mark_handled(self.agency, message_id)
            return HandOver.DONE

    async def _refuse(
        self,
        identity: Identity,
        message: AbstractIncomingMessage,
        body: bytes,
        check: str,
        reason: str,
        received_at: datetime,
    ) -> None:
        """Negative receipt to the claimed sender (if it verifies as an agency), then quarantine."""
        log.warning("message.refused", message_id=message.message_id, check=check)
        metrics.refused_at_edge(check)
        header = claimed_header(body)
        if header is not None and header.fields.message_type not in SYSTEM_MESSAGE_TYPES:
            receipt = notices.negative_receipt(
                header.fields.message_id,
                self.agency,
                received_at,
                header.ciphertext_sha256,
                check,
                reason,
            )
            try:
                await self._send_receipt(
                    identity, header.fields, receipt, "negative", check, received_at
                )
            except Exception:
                await message.nack(requeue=True)
                raise
        await message.reject(requeue=False)

    async def _send_receipt(
        self,
        identity: Identity,
        original: HeaderFields | Receipting,
        receipt: bytes,
        outcome: str,
        check: str | None,
        now: datetime,
    ) -> None:
        if original.sender not in identity.registry.agencies:
            return
        fields = notices.notice_header(
            "DeliveryReceipt",
            str(uuid.uuid4()),
            self.agency,
            (original.sender,),
            original,
            now,
            receipt_outcome=outcome,
            receipt_check=check,
        )
        await self._seal_and_publish(identity, fields, receipt)
