"""The router service: the imperative shell that carries out the routing plan.

For each message on an agency's ingress queue it verifies the sender's signature
against the registry (origin without decrypting), the header schema, the
ciphertext digest and the timestamp window; admits it to the store (its id
claimed for its header digest: a reused id is a replay); asks
``routing.route`` who may receive it; and carries out what
``routing_plan`` makes of that, effect by effect: audit, one store
transaction, publish with confirms, or for a refusal: audit, quarantine
with the reason, a NonDelivery signed by the gateway principal, and the
record. Nothing is dropped and the sender always learns why.

Order: messages of one case (correlation id) are routed one at a time in
the order the router takes them: each agency's in its arrival order (one
ingress queue each, services/ingress_consumers.py), and a reply cannot
overtake what it answers, which was delivered before it was written.
Different cases overlap, up to each ingress consumer's prefetch, so one
case's fsyncs and confirms do not hold up every other case, and one
agency's backlog does not hold up another agency's messages.

Crash safety: the ack is the last step, after every effect of the plan. A
message redelivered after a crash is recognised by its id and header digest
(``TrackingStore.admit``); if its work was not done, the plan is carried out
again, and its effects are safe to repeat (routing_plan says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import assert_never

import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from structlog.contextvars import bound_contextvars

from gateway.broker import piece_headers, topology
from gateway.broker.connection import confirmed_channel, connect, url_login
from gateway.broker.credentials import router_login
from gateway.broker.definitions import QUARANTINE_KEEPER, agency_user
from gateway.broker.inbox_room import InboxRoom
from gateway.broker.publisher import (
    PublishNacked,
    PublishRefused,
    Renew,
    fresh_exchanges,
    publish_until_confirmed,
)
from gateway.config.area_config import AreaConfig, load_config
from gateway.core import audit_chain, routing, routing_plan, sender_login
from gateway.core.deadlines import DeadlinePolicy
from gateway.core.envelope import (
    EnvelopeError,
    Header,
    HeaderFields,
    SigningIdentity,
    TimeWindow,
    VerifiedHeader,
    check_ciphertext,
    recipient_keys,
    seal_bytes,
    verify,
)
from gateway.core.envelope.claimed import ClaimedFacts, claimed_facts
from gateway.core.errors import GatewayError
from gateway.core.lifecycle import IllegalTransition
from gateway.core.records import ClaimResult, MessageRecord, Transition, record_of
from gateway.core.routing_plan import Audit, Publish, Quarantine, Record, SendNonDelivery
from gateway.infra import hangup, keystore
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services import audit_log, health, metrics
from gateway.services.directory_watch import DirectoryWatch
from gateway.services.escalator import DEFAULT_TICK_S, Escalator, EscalatorChannels, run_escalator
from gateway.services.ingress_consumers import IngressConsumers
from gateway.services.piece_relay import PieceRelay
from gateway.store import TrackingStore

REQUEUE_PAUSE_S = 3.0  # before a failed message is requeued: on_message in run_router

log = structlog.get_logger("gateway.services.router")

DEFAULT_PREFETCH = 32  # unacked messages the router holds per agency's ingress queue
DEFAULT_WINDOW = TimeWindow(max_age=timedelta(hours=24), max_future_skew=timedelta(minutes=5))


@dataclass
class RouterChannels:
    deliver: AbstractExchange
    quarantine: AbstractExchange
    room: InboxRoom  # checked before a fan-out, so a rejection stays whole
    connection: AbstractRobustConnection  # a retry after a nack publishes on new channels


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
        self.area = _area(config, self.policy)
        self.cases = KeyedLocks()
        metrics.track_keys(config.registry)

    def reload(self, config: AreaConfig) -> None:
        """Take a new registry, agreements and ``[deadlines]`` (a revoked key stops verifying
        at once; deadlines opened from now on follow the new rules).

        A new agency's inbox is declared by ``broker setup``, or by this router when it
        runs on the area's administrator URL (``_consume``'s directory apply).
        A policy given to ``run_router`` (the demo's shortened clock) is kept.
        """
        signer = keystore.load_signing_identity(config, config.gateway, utc_now())
        if self.policy is self.config.deadlines:  # not one given in place of the config's
            self.policy = config.deadlines
        self.config, self.signer = config, signer
        self.area = _area(config, self.policy)
        metrics.track_keys(config.registry)
        if self.audit is not None:
            self.audit.use_signer(signer)

    async def handle(self, body: bytes, exchanges: RouterChannels, login: str | None) -> None:
        """Route one ingress message; ``login`` is the broker login that published it (user_id)."""
        now = utc_now()
        try:
            with metrics.timed("verify"):
                verified = verify(body, self.config.registry, now, self.window, None)
                check_ciphertext(verified, body)
        except EnvelopeError as exc:
            claimed = claimed_facts(body)
            if claimed is not None and await self.misbound(claimed, login, body, exchanges, now):
                return
            late = await self._released_late(body, exc, now)
            if late is None:
                digest = hashlib.sha256(body).hexdigest()
                plan = routing_plan.unverified(claimed, exc, digest, now, self.area)
                await self._carry_out(plan, body, exchanges, now)
                return
            verified = late
        ids = verified.header.fields
        claim = ClaimedFacts(ids.message_id, ids.correlation_id, ids.sender, ids.message_type)
        if await self.misbound(claim, login, body, exchanges, now):
            return
        with bound_contextvars(message_id=ids.message_id, correlation_id=ids.correlation_id):
            async with self.cases.hold(ids.correlation_id):
                await self._route_verified(body, verified.header, exchanges, now)

    async def _released_late(
        self, body: bytes, error: EnvelopeError, now: datetime
    ) -> VerifiedHeader | None:
        """A message an operator released from quarantine (``quarantine release``) is judged
        again whatever its age: the time window may not refuse it, within the quarantine's
        retention. Every other check still applies, and ``admit`` still requires the same
        header as the refused copy's."""
        claimed = claimed_facts(body) if error.check == "timestamp" else None
        if claimed is None or not await self.store.was_released(claimed.message_id):
            return None
        window = TimeWindow(self.config.quarantine.retention, self.window.max_future_skew)
        try:
            verified = verify(body, self.config.registry, now, window, None)
            check_ciphertext(verified, body)
        except EnvelopeError:
            return None
        return verified

    async def misbound(
        self,
        claimed: ClaimedFacts,
        login: str | None,
        body: bytes,
        exchanges: RouterChannels,
        now: datetime,
    ) -> bool:
        """Quarantine, telling nobody, a message whose login may not speak for its sender."""
        config = self.config
        reason = sender_login.refusal(
            claimed.sender, login, config.broker_user_prefix, _trusted_logins(config)
        )
        if reason is None:
            return False
        metrics.sender_login_mismatch(login, config.broker_user_prefix, config.registry.agencies)
        log.warning(
            "message.sender_login_mismatch",
            message_id=claimed.message_id,
            claimed_sender=claimed.sender,
            login=login,
        )
        await self._carry_out(routing_plan.misbound(claimed, reason), body, exchanges, now)
        return True

    async def _route_verified(
        self, body: bytes, header: Header, exchanges: RouterChannels, now: datetime
    ) -> None:
        message, digest = header.fields, header.sha256
        admission = await self.store.admit(record_of(message, header.attachments), digest, now)
        if admission.claim is ClaimResult.REPLAY:  # the id belongs to another message
            plan = routing_plan.replayed(message, digest, now, self.area)
            await self._carry_out(plan, body, exchanges, now)
            return
        if not routing_plan.redo(admission):
            log.info("redelivery.skipped", message_id=message.message_id, state=admission.state)
            return
        original = await self.store.message(message.in_reply_to) if message.in_reply_to else None
        config = self.config
        decision = routing.route(
            message, config.registry, config.agreements, config.gateway, now.date(), original
        )
        case = (
            await self.store.case_deadlines(message.correlation_id)
            if routing_plan.reads_case(decision, message, config.hub)
            else []
        )
        plan = routing_plan.plan(decision, message, digest, now, self.area, case)
        if await self._carry_out(plan, body, exchanges, now):
            _observe(decision, message, original, now)

    async def refuse(
        self, plan: routing_plan.Plan, body: bytes, exchanges: RouterChannels, now: datetime
    ) -> None:
        """Carry out a refusal planned outside ``handle``: a transfer's piece (piece_relay.py)."""
        await self._carry_out(plan, body, exchanges, now)

    async def _carry_out(
        self, plan: routing_plan.Plan, body: bytes, exchanges: RouterChannels, now: datetime
    ) -> bool:
        """Every effect in order; False when an inbox refused the message and it was rejected."""
        for effect in plan:
            match effect:
                case Audit(decisions):
                    await self._audit(decisions, now)
                case Record(transitions):
                    await self._record(transitions, now)
                case Publish(message, digest, to):
                    refused_by = await _publish(exchanges, to, body, message)
                    if refused_by is not None:
                        refusal = routing_plan.inbox_unavailable(
                            message, digest, refused_by, now, self.area
                        )
                        await self._carry_out(refusal, body, exchanges, now)
                        return False
                case Quarantine():
                    await self._quarantine(effect, body, exchanges)
                case SendNonDelivery():
                    await self._send_non_delivery(effect, exchanges, now)
                case _:
                    assert_never(effect)
        return True

    async def _audit(self, decisions: tuple[audit_chain.Decision, ...], now: datetime) -> None:
        """Written before the change it records: a crash may repeat a record, never lose one."""
        if self._audit_writer is not None:
            await self._audit_writer.append_all(decisions, now)

    async def _record(self, transitions: tuple[Transition, ...], now: datetime) -> None:
        """One store transaction; a move the lifecycle refuses (a straggler) is logged."""
        results = await self.store.advance(transitions, now)
        for step, result in zip(transitions, results, strict=True):
            if isinstance(result, IllegalTransition):
                log.warning("transition.ignored", message_id=step.message_id, reason=str(result))

    async def _quarantine(self, effect: Quarantine, body: bytes, exchanges: RouterChannels) -> None:
        """Retried in place while unconfirmed, as an inbox publish is (``_to_inbox`` says why)."""
        await publish_until_confirmed(
            exchanges.quarantine,
            body,
            routing_key="",
            message_id=effect.message_id,
            headers={topology.QUARANTINE_REASON_HEADER: f"{effect.check}: {effect.reason}"},
        )
        metrics.rejected(effect.facts, effect.check, self.config.registry.agencies)
        log.warning(
            "message.quarantined",
            message_id=effect.message_id,
            check=effect.check,
            reason=effect.reason,
        )

    async def _send_non_delivery(
        self, effect: SendNonDelivery, exchanges: RouterChannels, now: datetime
    ) -> None:
        """Seal and send; a sender with no valid key, or malformed claimed ids, gets no notice.

        The quarantined copy and its reason remain either way.
        """
        header = effect.header
        try:
            keys = recipient_keys(self.config.registry, header.recipients, now)
            sealed = seal_bytes(header, effect.payload, self.signer, keys)
        except GatewayError as exc:
            log.warning("non_delivery.unaddressable", failed_id=header.in_reply_to, reason=str(exc))
            return
        for agency in header.recipients:
            await _to_inbox(exchanges, agency, sealed, header)
        log.info(
            "non_delivery.sent",
            message_id=header.message_id,
            failed_id=header.in_reply_to,
            check=effect.check,
        )


def _trusted_logins(config: AreaConfig) -> frozenset[str]:
    """Logins that may publish as any agency: the area's administrator (``[broker] url``) and
    the quarantine keeper, which republishes a released envelope byte for byte."""
    keeper = agency_user(QUARANTINE_KEEPER, config.broker_user_prefix)
    return frozenset({url_login(config.broker_url), keeper})


def _area(config: AreaConfig, policy: DeadlinePolicy) -> routing_plan.Area:
    return routing_plan.Area(config.gateway, config.hub, config.registry.agencies, policy)


def _observe(
    decision: routing.RoutingDecision,
    message: HeaderFields,
    original: MessageRecord | None,
    now: datetime,
) -> None:
    """Metrics and the info log of a plan carried out to its end (refusals count at quarantine)."""
    if isinstance(decision, routing.Deliver):
        metrics.routed(message, decision.recipients, now)
        log.info(
            "message.routed",
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            message_type=message.message_type,
            sender=message.sender,
            recipients=list(decision.recipients),
        )
    elif isinstance(decision, routing.ForwardReceipt):
        metrics.receipted(original, message.sender, decision.positive, now)
        log.info(
            "receipt.forwarded",
            message_id=message.message_id,
            receipted_id=decision.original_id,
            positive=decision.positive,
        )


async def _publish(
    exchanges: RouterChannels, to: tuple[str, ...], body: bytes, message: HeaderFields
) -> str | None:
    """Publish to each inbox in turn; the agency whose inbox refused it, if one did.

    A fan-out publishes to none unless every inbox has room (inbox_room says
    why and what it cannot see), so a full inbox rejects it whole.
    """
    if len(to) == 1:  # the broker's own refusal is whole
        return await _publish_each(exchanges, to, body, message)
    async with exchanges.room.held(to) as lacking:
        if lacking is not None:
            return lacking
        return await _publish_each(exchanges, to, body, message)


async def _publish_each(
    exchanges: RouterChannels, to: tuple[str, ...], body: bytes, message: HeaderFields
) -> str | None:
    """A nack from an inbox with room is transient (a quorum queue electing a leader after a
    node loss): the publish is retried on new channels within the publisher's budget, and
    past it the error requeues the message to be routed again; only a missing or full inbox
    refuses it."""
    for agency in to:
        try:
            await _to_inbox(exchanges, agency, body, message)
        except PublishNacked:
            if await exchanges.room.full(agency):
                return agency
            log.warning("inbox.nack_retried", agency=agency, message_id=message.message_id)
            async with fresh_exchanges(exchanges.connection, topology.DELIVER_EXCHANGE) as renew:
                await _to_inbox(exchanges, agency, body, message, renew)
        except PublishRefused:
            return agency
    return None


async def _to_inbox(
    exchanges: RouterChannels,
    agency: str,
    body: bytes,
    fields: HeaderFields,
    renew: Renew | None = None,
) -> None:
    """Publish to the agency's inbox until confirmed; with ``renew``, nacks too, on new channels.

    An unconfirmed publish (the router's channel closed while the broker restarts, or
    its connection is being restored) is retried here, holding the message, not
    requeued: each agency's ingress is consumed on channels of their own, which may
    be back before this one, and a message requeued at once would be redelivered
    and fail again until the ingress queue's delivery limit dead-lettered it.
    """
    send = functools.partial(publish_until_confirmed, retry_nacked=False)
    exchange = exchanges.deliver
    if renew is not None:
        send = functools.partial(publish_until_confirmed, retry_nacked=True, renew=renew)
        exchange = await renew()
    await send(
        exchange,
        body,
        routing_key=agency,
        message_id=fields.message_id,
        correlation_id=fields.correlation_id,
        message_type=fields.message_type,
    )


async def run_router(
    config: AreaConfig,
    store: TrackingStore,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    prefetch: int = DEFAULT_PREFETCH,
    window: TimeWindow = DEFAULT_WINDOW,
    reload_on_sighup: bool = False,
    policy: DeadlinePolicy | None = None,
    tick_s: float = DEFAULT_TICK_S,
    audit_path: Path | None = None,
    limits: topology.Limits = topology.Limits(),  # noqa: B008 (frozen)
) -> None:
    """Consume every agency's ingress queue and fire due deadlines until ``stop`` is set.

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
            limits,
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
    limits: topology.Limits,
) -> None:
    config = router.config
    login = router_login(config)  # its own least-privilege user once `broker setup` issued one
    connection = await connect(login.url, config.broker_tls)
    async with connection, contextlib.AsyncExitStack() as closing:
        channel: AbstractRobustChannel = await confirmed_channel(connection)
        if login.own:  # it may not declare: setup did (gateway/broker/definitions.py says why)
            await topology.check(channel, config.inbox_agencies, limits)
        else:
            await topology.declare(channel, config.inbox_agencies, limits)
        exchanges = RouterChannels(
            deliver=await channel.get_exchange(topology.DELIVER_EXCHANGE),
            quarantine=await channel.get_exchange(topology.QUARANTINE_EXCHANGE),
            room=InboxRoom(connection, limits),
            connection=connection,
        )
        relay = PieceRelay(router)
        await relay.open(connection)
        escalations = await confirmed_channel(connection)
        announcements = await connection.channel(publisher_confirms=False)
        escalating = asyncio.create_task(
            run_escalator(
                escalator,
                EscalatorChannels(
                    deliver=await escalations.get_exchange(topology.DELIVER_EXCHANGE),
                    events=await announcements.get_exchange(topology.EVENTS_EXCHANGE),
                    room=exchanges.room,
                ),
                stop,
                tick_s,
            )
        )

        async def on_message(message: AbstractIncomingMessage) -> None:
            # A failure requeues the message; past the queue's delivery limit
            # RabbitMQ dead-letters it to quarantine, so a poison message
            # neither blocks the queue nor disappears. The pause before the
            # requeue spreads those deliveries over REQUEUE_PAUSE_S each, so a
            # store or broker restart of a few seconds is outlived, not taken
            # for poison (tests/fault/test_store_restart.py).
            async with message.process(requeue=True):
                try:
                    if piece_headers.is_piece(message.headers):  # a transfer's piece
                        await relay.handle(message, exchanges)
                    else:
                        await router.handle(message.body, exchanges, message.user_id)
                except Exception:
                    await asyncio.sleep(REQUEUE_PAUSE_S)
                    raise

        consumers = IngressConsumers(connection, prefetch, on_message)

        async def apply_directory(directory_config: AreaConfig) -> None:
            router.reload(directory_config)
            escalator.reload(router.config, router.signer)
            if not login.own:  # on the administrator's URL it declares, as at start-up
                await topology.declare(channel, directory_config.inbox_agencies, limits)
            await consumers.follow(directory_config.inbox_agencies)  # a new agency's ingress

        watch = DirectoryWatch(config, apply_directory)
        closing.push_async_callback((await watch.start(login.url, config.broker_tls)).close)
        if reload_on_sighup:  # for the process's life, beside any adapters it hosts
            hangup.on_hangup(functools.partial(_reload, router, escalator, config.path))
        await consumers.follow(router.config.inbox_agencies)
        retrying = asyncio.create_task(consumers.retry(stop, lambda: router.config.inbox_agencies))
        log.info("router.started", queues=consumers.queues)
        if ready is not None:
            ready.set()
        with health.READINESS.watching("broker (router)", health.broker_connected(connection)):
            await stop.wait()
        await consumers.cancel()
        await retrying
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
