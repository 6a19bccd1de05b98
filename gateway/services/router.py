"""The router service: the imperative shell around routing.route.

For each message on ``gateway.router`` it verifies the sender's signature
against the registry (origin without decrypting), the header schema, the
ciphertext digest, the timestamp window and replay; then asks
``routing.route`` who may receive it; then records the state change,
publishes, and only then acks. Anything it rejects is copied to quarantine
with its reason and answered with a NonDelivery signed by the gateway
principal, so nothing is dropped and the sender always learns why.

Order: messages of one case (correlation id) are routed one at a time in
arrival order; different cases overlap, up to the channel's prefetch, so
one case's fsyncs and confirms do not hold up every other case.

Crash safety: the ack is the last step. A message redelivered after a crash
is recognised by its id and header digest (``TrackingStore.admit``); if it
had not yet been delivered, routing is repeated, and edges absorb the
duplicate by message id.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustChannel
from structlog.contextvars import bound_contextvars

from gateway.broker import topology
from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.credentials import router_login
from gateway.broker.publisher import PublishRefused, publish
from gateway.config.area_config import AreaConfig, load_config
from gateway.core import audit_chain, notices, routing
from gateway.core.audit_chain import Outcome
from gateway.core.deadline_rules import Routed, closed_by, ended_by_rejection, opened_by, rerated
from gateway.core.deadlines import DeadlinePolicy
from gateway.core.envelope import (
    EnvelopeError,
    Header,
    HeaderFields,
    SigningIdentity,
    TimeWindow,
    check_ciphertext,
    recipient_keys,
    seal_bytes,
    verify,
)
from gateway.core.envelope.claimed import ClaimedFacts, claimed_facts
from gateway.core.errors import GatewayError
from gateway.core.lifecycle import Event, IllegalTransition, State
from gateway.core.records import ClaimResult, DeadlineChanges, record_of
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES, SYSTEM_PURPOSE
from gateway.infra import hangup, keystore
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services import audit_log, metrics
from gateway.services.escalator import DEFAULT_TICK_S, Escalator, EscalatorChannels, run_escalator
from gateway.store import TrackingStore

log = structlog.get_logger("gateway.services.router")

DEFAULT_WINDOW = TimeWindow(max_age=timedelta(hours=24), max_future_skew=timedelta(minutes=5))
ENVELOPE_CHECKS = {
    "container": "undecodable",
    "header": "header-schema",
    "signature": "signature",
    "key": "key",
    "timestamp": "timestamp",
    "replay": "replay",
    "ciphertext": "ciphertext",
}
NOTICE_LAWFUL_BASIS = ("uk-gdpr-6-1-e",)
# A redelivered message in these states is routed again (edges absorb duplicates by id).
REDO_STATES = frozenset({State.SUBMITTED, State.ROUTED})


@dataclass
class RouterChannels:
    deliver: AbstractExchange
    quarantine: AbstractExchange


class Router:
    """Routes one ingress message at a time; ``handle`` is the unit the tests drive."""

    def __init__(
        self,
        config: AreaConfig,
        store: TrackingStore,
        signer: SigningIdentity,
        window: TimeWindow = DEFAULT_WINDOW,
        audit: audit_log.AuditLog | None = None,
        policy: DeadlinePolicy | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.signer = signer
        self.window = window
        self.audit = audit
        self._audit_writer = audit_log.GroupCommit(audit) if audit is not None else None
        self.policy = policy or config.deadlines
        self.cases = KeyedLocks()
        metrics.track_keys(config.registry)

    def reload(self, config: AreaConfig) -> None:
        """Take a new registry, agreements and ``[deadlines]`` (a revoked key stops verifying
        at once; deadlines opened from now on follow the new rules).

        New agencies still need a restart: their inboxes are declared at start-up.
        A policy given to ``run_router`` (the demo's shortened clock) is kept.
        """
        signer = keystore.load_signing_identity(config, config.gateway, utc_now())
        if self.policy is self.config.deadlines:  # not one given in place of the config's
            self.policy = config.deadlines
        self.config, self.signer = config, signer
        metrics.track_keys(config.registry)
        if self.audit is not None:
            self.audit.use_signer(signer)

    async def handle(self, body: bytes, exchanges: RouterChannels) -> None:
        now = utc_now()
        try:
            with metrics.timed("verify"):
                verified = verify(body, self.config.registry, now, self.window, None)
                check_ciphertext(verified, body)
        except EnvelopeError as exc:
            await self._reject_unverified(body, exc, now, exchanges)
            return
        ids = verified.header.fields
        with bound_contextvars(message_id=ids.message_id, correlation_id=ids.correlation_id):
            async with self.cases.hold(ids.correlation_id):
                await self._route_verified(body, verified.header, exchanges, now)

    async def _route_verified(
        self, body: bytes, header: Header, exchanges: RouterChannels, now: datetime
    ) -> None:
        fields = header.fields
        admission = await self.store.admit(record_of(fields), header.sha256, now)
        if admission.claim is ClaimResult.REPLAY:
            reason = f"message id {fields.message_id} was already used by another message"
            await self._audit(
                audit_chain.from_header(
                    fields, header.sha256, Outcome.REJECTED, check="replay", reason=reason
                ),
                now,
            )
            await self._quarantine(body, fields.message_id, "replay", reason, exchanges)
            metrics.rejected(fields, "replay", self.config.registry.agencies)
            await self._non_delivery(fields, "replay", reason, exchanges, now)
            return
        if admission.state not in REDO_STATES:
            log.info("redelivery.skipped", message_id=fields.message_id, state=str(admission.state))
            return
        original = await self.store.message(fields.in_reply_to) if fields.in_reply_to else None
        decision = routing.route(
            _facts(header),
            self.config.registry,
            self.config.agreements,
            self.config.gateway,
            now.date(),
            original,
        )
        if isinstance(decision, routing.Reject):
            await self._reject(body, header, decision, exchanges, now)
        elif isinstance(decision, routing.ForwardReceipt):
            await self._forward_receipt(body, header, decision, exchanges, now)
            metrics.receipted(original, fields.sender, decision.positive, now)
        else:
            await self._deliver(body, header, decision, exchanges, now)

    async def _audit(self, decision: audit_chain.Decision, now: datetime) -> None:
        """Written before the change it records: a crash may repeat a record, never lose one."""
        if self._audit_writer is not None:
            await self._audit_writer.append(decision, now)

    async def _advance(
        self,
        message_id: str,
        event: Event,
        now: datetime,
        reason: str | None = None,
        detail: str | None = None,
        deadlines: DeadlineChanges | None = None,
    ) -> None:
        """Apply ``event`` via the lifecycle: repeats change nothing, illegal moves are logged."""
        try:
            await self.store.advance(message_id, event, now, reason, detail, deadlines)
        except IllegalTransition as exc:
            log.warning("transition.ignored", message_id=message_id, reason=str(exc))

    async def _deadline_changes(self, fields: HeaderFields, now: datetime) -> DeadlineChanges:
        """What routing this message opens, meets and re-rates (deadline_rules decides)."""
        routed, hub = _routed(fields), self.config.hub
        reschedules = []
        if fields.sender == hub and fields.rag is not None:
            case = await self.store.case_deadlines(fields.correlation_id)
            reschedules = rerated(routed, case, self.policy, hub)
        return DeadlineChanges(
            opened=opened_by(routed, now, self.policy, hub),
            closures=closed_by(routed, hub),
            reschedules=reschedules,
        )

    async def _deliver(
        self,
        body: bytes,
        header: Header,
        decision: routing.Deliver,
        exchanges: RouterChannels,
        now: datetime,
    ) -> None:
        """Record routed first, so a fast receipt never finds the message still submitted."""
        fields = header.fields
        await self._audit(
            audit_chain.from_header(
                fields,
                header.sha256,
                Outcome.ROUTED,
                recipients=decision.recipients,
                agreement_ids=decision.agreement_ids,
            ),
            now,
        )
        await self._advance(
            fields.message_id,
            Event.ROUTED,
            now,
            detail=f"to {', '.join(decision.recipients)} under {', '.join(decision.agreement_ids)}",
            deadlines=await self._deadline_changes(fields, now),
        )
        for recipient in decision.recipients:
            try:
                await _to_inbox(exchanges, recipient, body, fields)
            except PublishRefused:
                reason = f"the inbox of {recipient} is missing or full"
                await self._reject(
                    body, header, routing.Reject("inbox-unavailable", reason), exchanges, now
                )
                return
        if decision.answers is not None:
            await self._audit(
                audit_chain.from_header(
                    fields, header.sha256, Outcome.ANSWERED, refers_to=decision.answers
                ),
                now,
            )
            await self._advance(
                decision.answers, Event.ANSWERED, now, detail=f"answered by {fields.message_id}"
            )
        metrics.routed(fields, decision.recipients, now)
        log.info(
            "message.routed",
            message_id=fields.message_id,
            correlation_id=fields.correlation_id,
            message_type=fields.message_type,
            sender=fields.sender,
            recipients=list(decision.recipients),
        )

    async def _forward_receipt(
        self,
        body: bytes,
        header: Header,
        decision: routing.ForwardReceipt,
        exchanges: RouterChannels,
        now: datetime,
    ) -> None:
        fields = header.fields
        await self._audit(
            audit_chain.from_header(
                fields, header.sha256, Outcome.ROUTED, recipients=(decision.to,)
            ),
            now,
        )
        await self._advance(
            fields.message_id,
            Event.ROUTED,
            now,
            detail=f"receipt to {decision.to}",
            deadlines=DeadlineChanges(closures=closed_by(_routed(fields), self.config.hub)),
        )
        await _to_inbox(exchanges, decision.to, body, fields)
        await self._audit(
            audit_chain.from_header(
                fields,
                header.sha256,
                Outcome.DELIVERED if decision.positive else Outcome.REJECTED,
                check=None if decision.positive else fields.receipt_check,
                reason=None if decision.positive else f"negative receipt from {fields.sender}",
                refers_to=decision.original_id,
            ),
            now,
        )
        if decision.positive:
            await self._advance(
                decision.original_id,
                Event.RECEIPTED_POSITIVE,
                now,
                detail=f"receipted by {fields.sender} in {fields.message_id}",
            )
        else:
            await self._advance(
                decision.original_id,
                Event.RECEIPTED_NEGATIVE,
                now,
                reason=f"negative receipt from {fields.sender}: {fields.receipt_check}",
                detail=fields.message_id,
            )
        log.info(
            "receipt.forwarded",
            message_id=fields.message_id,
            receipted_id=decision.original_id,
            positive=decision.positive,
        )

    async def _reject(
        self,
        body: bytes,
        header: Header,
        decision: routing.Reject,
        exchanges: RouterChannels,
        now: datetime,
    ) -> None:
        fields = header.fields
        await self._audit(
            audit_chain.from_header(
                fields,
                header.sha256,
                Outcome.REJECTED,
                check=decision.check,
                reason=decision.reason,
            ),
            now,
        )
        await self._quarantine(body, fields.message_id, decision.check, decision.reason, exchanges)
        metrics.rejected(fields, decision.check, self.config.registry.agencies)
        await self._advance(
            fields.message_id,
            Event.REJECTED,
            now,
            reason=f"{decision.check}: {decision.reason}",
            deadlines=DeadlineChanges(
                closures=(ended_by_rejection(fields.message_id, decision.check),)
            ),
        )
        if fields.message_type != routing.RECEIPT:
            await self._non_delivery(fields, decision.check, decision.reason, exchanges, now)

    async def _reject_unverified(
        self, body: bytes, exc: EnvelopeError, now: datetime, exchanges: RouterChannels
    ) -> None:
        """Quarantine a message whose origin did not verify, and tell its claimed sender.

        A NonDelivery goes to the claimed sender only when that is a registered
        agency: it is the agency whose name was used, forged or not.
        """
        claimed = claimed_facts(body)
        check = ENVELOPE_CHECKS.get(exc.check, "undecodable")
        if claimed is not None and claimed.sender not in self.config.registry.agencies:
            check = "unknown-sender"
        await self._audit(audit_chain.from_unverified(claimed, check, str(exc)), now)
        message_id = claimed.message_id if claimed is not None else None
        await self._quarantine(body, message_id, check, str(exc), exchanges)
        metrics.rejected(claimed, check, self.config.registry.agencies)
        if claimed is not None and claimed.message_type not in SYSTEM_MESSAGE_TYPES:
            await self._non_delivery(claimed, check, str(exc), exchanges, now)

    async def _quarantine(
        self,
        body: bytes,
        message_id: str | None,
        check: str,
        reason: str,
        exchanges: RouterChannels,
    ) -> None:
        await publish(
            exchanges.quarantine,
            body,
            routing_key="",
            message_id=message_id or f"unverified-{uuid.uuid4()}",
            headers={topology.QUARANTINE_REASON_HEADER: f"{check}: {reason}"},
        )
        log.warning("message.quarantined", message_id=message_id, check=check, reason=reason)

    async def _non_delivery(
        self,
        failed: HeaderFields | ClaimedFacts,
        check: str,
        reason: str,
        exchanges: RouterChannels,
        now: datetime,
    ) -> None:
        """Tell the sender why, signed by the gateway; skipped when it cannot be addressed.

        A sender that is not a registered agency, has no valid encryption key,
        or whose claimed ids are malformed gets no notice; the quarantined copy
        and its reason remain.
        """
        if (
            failed.sender not in self.config.registry.agencies
            or failed.sender == self.config.gateway
        ):
            return
        try:
            sealed, fields = self._sealed_non_delivery(failed, check, reason, now)
        except GatewayError as exc:
            log.warning("non_delivery.unaddressable", failed_id=failed.message_id, reason=str(exc))
            return
        await _to_inbox(exchanges, failed.sender, sealed, fields)
        log.info(
            "non_delivery.sent",
            message_id=fields.message_id,
            failed_id=failed.message_id,
            check=check,
        )

    def _sealed_non_delivery(
        self, failed: HeaderFields | ClaimedFacts, check: str, reason: str, now: datetime
    ) -> tuple[bytes, HeaderFields]:
        payload = notices.non_delivery(failed.message_id, None, check, reason, now)
        fields = HeaderFields(
            message_id=str(uuid.uuid4()),
            correlation_id=failed.correlation_id,
            message_type="NonDelivery",
            sender=self.config.gateway,
            recipients=(failed.sender,),
            created_at=now,
            purpose=SYSTEM_PURPOSE,
            lawful_bases=NOTICE_LAWFUL_BASIS,
            in_reply_to=failed.message_id,
        )
        sealed = seal_bytes(
            fields, payload, self.signer, recipient_keys(self.config.registry, [failed.sender], now)
        )
        return sealed, fields


async def _to_inbox(
    exchanges: RouterChannels, agency: str, body: bytes, fields: HeaderFields
) -> None:
    await publish(
        exchanges.deliver,
        body,
        routing_key=agency,
        message_id=fields.message_id,
        correlation_id=fields.correlation_id,
        message_type=fields.message_type,
    )


def _facts(header: Header) -> routing.Facts:
    f = header.fields
    return routing.Facts(
        message_id=f.message_id,
        message_type=f.message_type,
        sender=f.sender,
        recipients=f.recipients,
        purpose=f.purpose,
        lawful_bases=f.lawful_bases,
        in_reply_to=f.in_reply_to,
        receipt_outcome=f.receipt_outcome,
        receipt_check=f.receipt_check,
    )


def _routed(f: HeaderFields) -> Routed:
    return Routed(
        message_id=f.message_id,
        correlation_id=f.correlation_id,
        message_type=f.message_type,
        sender=f.sender,
        recipients=f.recipients,
        rag=f.rag,
        stated_deadline=f.deadline,
        in_reply_to=f.in_reply_to,
        receipt_outcome=f.receipt_outcome,
    )


async def run_router(
    config: AreaConfig,
    store: TrackingStore,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    prefetch: int = 32,
    window: TimeWindow = DEFAULT_WINDOW,
    reload_on_sighup: bool = False,
    policy: DeadlinePolicy | None = None,
    tick_s: float = DEFAULT_TICK_S,
    audit_path: Path | None = None,
) -> None:
    """Consume ``gateway.router`` and fire due deadlines until ``stop`` is set.

    Each message is acked only after it is done. ``ready`` is set once the
    topology is declared and the consumer is running. With
    ``reload_on_sighup``, SIGHUP re-reads the config file; a broken one is
    refused with its error logged, and the running config stays. ``policy``
    overrides the config's deadlines (the demo's shortened clock). Each
    router process keeps its own audit chain (``audit_path``; default
    state/audit.jsonl), since a chain has one writer.
    """
    signer = keystore.load_signing_identity(config, config.gateway, utc_now())
    audit_file = audit_path or audit_log.default_path(config)
    audit = await audit_log.open_kept(config, audit_file, signer, store)  # its head kept in store
    try:
        await _consume(
            Router(config, store, signer, window, audit, policy),
            Escalator(config, store, signer, audit, policy),
            stop,
            ready,
            prefetch,
            reload_on_sighup,
            tick_s,
        )
    finally:
        await audit.aclose(utc_now())


async def _consume(
    router: Router,
    escalator: Escalator,
    stop: asyncio.Event,
    ready: asyncio.Event | None,
    prefetch: int,
    reload_on_sighup: bool,
    tick_s: float,
) -> None:
    config = router.config
    login = router_login(config)  # its own least-privilege user once `broker setup` issued one
    connection = await connect(login.url)
    async with connection:
        channel: AbstractRobustChannel = await confirmed_channel(connection, prefetch=prefetch)
        if login.own:  # it may not declare: setup did (gateway/broker/definitions.py says why)
            await topology.check(channel, config.inbox_agencies, topology.Limits())
        else:
            await topology.declare(channel, config.inbox_agencies, topology.Limits())
        exchanges = RouterChannels(
            deliver=await channel.get_exchange(topology.DELIVER_EXCHANGE),
            quarantine=await channel.get_exchange(topology.QUARANTINE_EXCHANGE),
        )
        queue = await channel.get_queue(topology.ROUTER_QUEUE)
        escalations = await confirmed_channel(connection)
        announcements = await connection.channel(publisher_confirms=False)
        escalating = asyncio.create_task(
            run_escalator(
                escalator,
                EscalatorChannels(
                    deliver=await escalations.get_exchange(topology.DELIVER_EXCHANGE),
                    events=await announcements.get_exchange(topology.EVENTS_EXCHANGE),
                ),
                stop,
                tick_s,
            )
        )

        async def on_message(message: AbstractIncomingMessage) -> None:
            # A failure requeues the message; past the queue's delivery limit
            # RabbitMQ dead-letters it to quarantine, so a poison message
            # neither blocks the queue nor disappears.
            async with message.process(requeue=True):
                await router.handle(message.body, exchanges)

        if reload_on_sighup:  # for the process's life, beside any adapters it hosts
            hangup.on_hangup(functools.partial(_reload, router, escalator, config.path))
        tag = await queue.consume(on_message)
        log.info("router.started", queue=topology.ROUTER_QUEUE)
        if ready is not None:
            ready.set()
        await stop.wait()
        await queue.cancel(tag)
        await escalating


def _reload(router: Router, escalator: Escalator, path: Path) -> None:
    try:
        router.reload(load_config(str(path)))
    except GatewayError as exc:
        log.error("config.reload_refused", reason=str(exc))
        return
    escalator.reload(router.config, router.signer)
    log.info(
        "config.reloaded",
        keys=len(router.config.registry.keys),
        agreements=len(router.config.agreements),
    )
