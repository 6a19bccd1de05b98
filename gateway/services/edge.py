"""The edge client: what every adapter, the e-mail intake and the CLI use to talk to the exchange.

An edge holds one agency's private keys, read from disk when it starts and
again on ``reload`` (never per message), with the registry they were read
against; each unit of work (a submission, a received message) reads the
clock once and passes that instant down. ``submit`` checks a payload's
schema, seals it and publishes it to ingress. ``consume`` takes the agency's
inbox: it opens each message (verify, decrypt, content signature), checks
the payload schema, hands it to the agency's handler, and then sends a signed
DeliveryReceipt back through the router. A message it cannot accept gets a
negative receipt naming the failed check and is rejected to quarantine; it is
never dropped.

Exactly-once to the handler: a message is handed over only if the edge's
store has not recorded it as handled; it is recorded after the handler
returns, and the broker ack comes last. A crash between the handler's
durable write and that record is the only window for a repeat, so handlers
key their writes by message id (the inbox writer names files by it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from structlog.contextvars import bound_contextvars

from gateway.broker import topology
from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.credentials import agency_broker_url
from gateway.broker.publisher import publish_until_confirmed
from gateway.config.area_config import AreaConfig
from gateway.core import notices, schemas
from gateway.core.envelope import (
    DecryptionIdentity,
    EnvelopeError,
    Header,
    HeaderFields,
    SigningKeys,
    open_bytes,
    recipient_keys,
    seal_bytes,
)
from gateway.core.envelope.claimed import claimed_header
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
from gateway.services import metrics
from gateway.services.directory_watch import DirectoryWatch
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
    "header": "header-schema",
    "container": "undecodable",
}


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
class Delivered:
    """An opened, verified, schema-valid message, as the agency system receives it."""

    header: Header
    payload: bytes
    plaintext_sha256: str
    ciphertext_sha256: str


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
    needs it, so an edge that only sends is made without one.
    """

    def __init__(
        self,
        config: AreaConfig,
        agency: str,
        store: HandledMarks | None = None,
        broker_url: str | None = None,
    ) -> None:
        config.registry.agency(agency)
        self.config = config
        self.agency = agency
        self.store = store
        self.broker_url = broker_url or agency_broker_url(config, agency)
        self.identity = Identity(
            config.registry,
            keystore.load_signing_keys(config, agency, utc_now()),
            keystore.load_decryption_identity(config, agency),
        )
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._ingress: AbstractExchange | None = None
        self._handling = KeyedLocks()

    async def __aenter__(self) -> Edge:
        self._connection = await connect(self.broker_url, self.config.broker_tls)
        self._channel = await confirmed_channel(self._connection, prefetch=32)
        self._ingress = await self._channel.get_exchange(topology.INGRESS_EXCHANGE, ensure=False)
        await DirectoryWatch(self.config, self._apply_directory).start(self._connection)
        return self

    async def _apply_directory(self, config: AreaConfig) -> None:
        try:
            self.reload(config)
        except GatewayError as exc:  # the registry applied; the keys could not be re-read
            log.error("edge.keys_reload_failed", agency=self.agency, reason=str(exc))

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

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
        self.identity = Identity(
            config.registry,
            keystore.load_signing_keys(config, self.agency, utc_now()),
            keystore.load_decryption_identity(config, self.agency),
        )

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
        # node died) is waited out too, within the publisher's retry budget.
        await publish_until_confirmed(
            self.ingress,
            sealed,
            retry_nacked=True,
            routing_key=topology.INGRESS_ROUTING_KEY,
            message_id=fields.message_id,
            correlation_id=fields.correlation_id,
            message_type=fields.message_type,
        )

    async def consume(self, handler: Handler) -> tuple[AbstractQueue, str]:
        """Start consuming the inbox; returns the queue and consumer tag to cancel with."""
        if self._channel is None:
            raise RuntimeError("use the Edge as an async context manager")
        store = self.store
        if store is None:
            raise RuntimeError("an edge that consumes needs a store to record hand-overs")
        # A passive declare (not ensure=False) registers the queue with the robust
        # channel, so the consumer is restored after a broker restart.
        queue = await self._channel.get_queue(topology.inbox_queue(self.agency))

        async def on_message(message: AbstractIncomingMessage) -> None:
            # Set by the router from the verified header: the ids of every line logged meanwhile.
            ids = {"message_id": message.message_id, "correlation_id": message.correlation_id}
            with bound_contextvars(**ids):
                await self._receive(message, handler, store)

        tag = await queue.consume(on_message)
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
        fields = opened.header.fields
        source = f"message {fields.message_id}"
        try:
            root = schemas.validate(payload, source, fields.message_type)
        except SchemaViolation as exc:
            await self._refuse(
                identity, message, body, "payload-schema", exc.redacted(), received_at
            )
            return
        except UnsafeXmlError as exc:
            await self._refuse(identity, message, body, "undecodable", str(exc), received_at)
            return
        upn = upn_refusal(root, source, fields.sender, (self.agency,), identity.registry)
        if upn is not None:
            await self._refuse(identity, message, body, "policy", upn, received_at)
            return
        delivered = Delivered(
            opened.header, payload, opened.plaintext_sha256, opened.ciphertext_sha256
        )
        # Shielded: closing a channel (the broker went away) cancels its consumer tasks,
        # and a hand-over cancelled after the agency's system took the message but before
        # it was recorded would hand the redelivered copy over a second time.
        outcome = await asyncio.shield(self._hand_over(delivered, handler, store))
        if isinstance(outcome, HandlerRefused):
            await self._refuse(identity, message, body, "handler", str(outcome), received_at)
            return
        if outcome is HandOver.RETRY:
            # The agency system did not take it: redeliver later; past the
            # inbox's delivery limit RabbitMQ quarantines it.
            await message.nack(requeue=True)
            return
        if fields.message_type not in SYSTEM_MESSAGE_TYPES:
            # The hand-over is a second event, which the receipt dates: a webhook
            # may have taken minutes of retries since the message was received.
            handed_over_at = utc_now()
            receipt = notices.positive_receipt(
                fields.message_id,
                self.agency,
                received_at,
                opened.ciphertext_sha256,
                opened.plaintext_sha256,
                handed_over_at,
            )
            await self._send_receipt(identity, fields, receipt, "positive", None, handed_over_at)
        await message.ack()

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
        original: HeaderFields,
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
