"""The escalator: fires the deadlines that fall due, on a tick, inside the router service.

Each tick asks the store for due deadlines (``fire_due``), plans each one's
next level (``deadline_rules.plan_escalation``), seals an Escalation signed
by the gateway principal, publishes it to every recipient's inbox and an
event to ``mash.events``, and audits it; the store records the firing only
after all of that is confirmed.

Why a tick and not a timer per deadline: the schedule lives in the store,
so a deadline that passed while no router ran fires on the first tick
after start-up, and several routers share one schedule. A tick of 1 s keeps
the lag well under the 5 s target at no measurable idle cost (one indexed
query a second).

Batches: a burst is fired a batch (500) at a time, two batches in flight
(``LANES``): each claims its deadlines, seals them, publishes every copy with
the confirms awaited together, and is recorded in one transaction of a few
multi-row statements; while one waits for the broker and the store, the
other is sealed. Under ``run_escalator`` the sealing runs in a worker
process (``sealer_pool``), a chunk (``SEAL_CHUNK``) at a time, so the event
loop publishes one chunk while the next is sealed on the other core. A
batch logs one line with its counts; each escalation's ids are logged at
debug.

Exactly once: the store records each (deadline, level) once (a unique
index; a repeat changes nothing), and hands a due deadline to one batch at
a time (row locks with SKIP LOCKED on PostgreSQL, across routers; on SQLite,
which one router owns, an in-memory claim). A router that dies after publishing and before recording
leaves the deadline due; the next firing carries the same message id, so
recipients' edges hand the escalation over once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, DeliveryMode

from gateway.broker.inbox_room import InboxRoom
from gateway.broker.publisher import PublishNacked, PublishRefused, publish
from gateway.config.area_config import AreaConfig
from gateway.core import audit_chain, deadline_rules, notices
from gateway.core.deadline_rules import Deadline, EscalationPlan
from gateway.core.deadlines import DeadlinePolicy
from gateway.core.envelope import (
    HeaderFields,
    RecipientKey,
    SigningIdentity,
    recipient_keys,
    seal_bytes,
)
from gateway.core.errors import GatewayError
from gateway.core.records import Firing, record_of
from gateway.infra.clock import utc_now
from gateway.services import audit_log, metrics, sealer_pool
from gateway.services.sealer_pool import SealerPool
from gateway.store import EscalatorStore

log = structlog.get_logger("gateway.services.escalator")

EVENT_ROUTING_KEY = "deadline.escalated.level{level}"
DEFAULT_TICK_S = 1.0
DEFAULT_BATCH = 500
# Batches in flight at once: one is sealed while the other waits on the broker and the store.
LANES = 2
# Escalations sealed at once: a batch's first chunk is published while the next is sealed.
SEAL_CHUNK = 100
# A chunk this large is a burst: worth a sealing worker on the other core.
WORKER_FROM = 20
# The deadline gauges are a GROUP BY over every deadline: refreshed on a slower
# beat than the tick, so 100,000 open deadlines cost nothing noticeable idle.
COUNTS_EVERY_S = 30.0


# One escalation to send: its plan, its header (addressable recipients only), payload and keys.
Outgoing = tuple[EscalationPlan, HeaderFields, bytes, list[RecipientKey]]


@dataclass
class EscalatorChannels:
    deliver: AbstractExchange  # on a channel with publisher confirms
    events: AbstractExchange  # on a channel without: events are notifications
    room: InboxRoom  # tells a full inbox's nack from a transient one


class Escalator:
    """Fires due deadlines; ``tick`` is the unit the tests drive."""

    def __init__(
        self,
        config: AreaConfig,
        store: EscalatorStore,
        signer: SigningIdentity,
        audit: audit_log.AuditLog | None = None,
        policy: DeadlinePolicy | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.config = config
        self.store = store
        self.signer = signer
        self.audit = audit
        self._given_policy = policy
        self.policy = policy or config.deadlines
        self.batch = batch
        self._worker_allowed = False  # sealing in this process until ``sealing_worker``
        self._pool: SealerPool | None = None

    def reload(self, config: AreaConfig, signer: SigningIdentity) -> None:
        """Take a re-read config: registry, signer and ``[deadlines]`` (contacts, grace, calendar).

        A policy given in place of the config's (the demo's shortened clock) is kept.
        """
        self.config, self.signer = config, signer
        self.policy = self._given_policy or config.deadlines

    @contextlib.asynccontextmanager
    async def sealing_worker(self) -> AsyncIterator[None]:
        """Inside, a chunk of ``WORKER_FROM`` or more is sealed in a worker process
        (``sealer_pool``), started at the first such chunk: a router whose deadlines
        fall due a few at a time never starts one. Smaller chunks, and the chunk
        that starts the worker, are sealed in this process."""
        self._worker_allowed = True
        try:
            yield
        finally:
            self._worker_allowed = False
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    async def tick(self, channels: EscalatorChannels) -> int:
        """Fire every deadline due now, a batch at a time, LANES batches at once; how many fired."""
        lanes = await asyncio.gather(
            *(self._lane(channels) for _ in range(LANES)), return_exceptions=True
        )
        for failed in lanes:  # raised once every lane has stopped, so none outlives the tick
            if isinstance(failed, BaseException):
                raise failed
        fired = sum(n for n in lanes if isinstance(n, int))
        if fired:  # once per tick, not per batch: the count is a scan of every deadline
            await self.refresh_counts()
        return fired

    async def _lane(self, channels: EscalatorChannels) -> int:
        """Claim, fire and record batches until one comes back short.

        Lanes claim disjoint deadlines (the store passes over rows another
        batch holds), so while one batch waits for its confirms and its
        commit, the next is being sealed.
        """
        fired = 0
        while True:
            now = utc_now()

            async def fire(due: list[Deadline], now: datetime = now) -> list[Firing]:
                return await self._fire(due, channels, now)

            count = await self.store.fire_due(now, self.batch, fire)
            fired += count
            if count < self.batch:
                return fired

    async def refresh_counts(self) -> None:
        """Open and overdue deadlines by kind, RAG and agency, for /metrics."""
        metrics.set_deadline_counts(await self.store.deadline_counts(utc_now()))

    async def _fire(
        self, due: list[Deadline], channels: EscalatorChannels, now: datetime
    ) -> list[Firing]:
        contacts = deadline_rules.escalation_contacts(
            self.policy, self.config.registry, self.config.hub
        )
        plans = [
            deadline_rules.plan_escalation(d, contacts, self.policy, self.config.gateway, now)
            for d in due
        ]
        headers = [self._header(p) for p in plans]
        if self.audit is not None:
            # Before anything is sent, as the router audits: one flush for the batch.
            decisions = [_decision(p, h) for p, h in zip(plans, headers, strict=True)]
            await self.audit.write([(d, now) for d in decisions])
        outgoing, nobody = self._addressed(plans, headers, now)
        # Sealed a chunk at a time (in the worker when there is one), each chunk
        # published as soon as it is sealed, while the next is being sealed.
        await asyncio.gather(
            *(
                self._send_chunk(outgoing[start : start + SEAL_CHUNK], channels)
                for start in range(0, len(outgoing), SEAL_CHUNK)
            )
        )
        for plan in nobody:
            await self._announce(plan, channels)
        log.info(
            "deadline.escalated_batch",
            escalations=len(plans),
            copies=sum(len(f.recipients) for _, f, _, _ in outgoing),
            unaddressed=len(nobody),
        )
        return [Firing(p, record_of(h)) for p, h in zip(plans, headers, strict=True)]

    def _header(self, plan: EscalationPlan) -> HeaderFields:
        deadline = plan.deadline
        return notices.notice_header(
            "Escalation",
            plan.message_id,
            self.config.gateway,
            plan.recipients,
            deadline,
            plan.escalated_at,
            rag=deadline.rag,
        )

    def _addressed(
        self, plans: list[EscalationPlan], headers: list[HeaderFields], now: datetime
    ) -> tuple[list[Outgoing], list[EscalationPlan]]:
        """Each escalation with its payload and the keys of those recipients that have one;
        and the escalations that reach nobody.

        A recipient without a usable key is logged and left out, never blocks
        the rest; an escalation that reaches nobody is still recorded as fired,
        so the ladder moves on and `overdue` shows the breach. Keys are looked
        up once per set of recipients in the batch.
        """
        keys_for: dict[tuple[str, ...], tuple[tuple[str, ...], list[RecipientKey]]] = {}
        outgoing: list[Outgoing] = []
        nobody = []
        for plan, fields in zip(plans, headers, strict=True):
            if fields.recipients not in keys_for:
                keys_for[fields.recipients] = self._keys(fields, now)
            addressable, keys = keys_for[fields.recipients]
            if not addressable:
                nobody.append(plan)
                continue
            if addressable != fields.recipients:
                fields = replace(fields, recipients=addressable)
            outgoing.append((plan, fields, _payload(plan), keys))
        return outgoing, nobody

    def _keys(
        self, fields: HeaderFields, now: datetime
    ) -> tuple[tuple[str, ...], list[RecipientKey]]:
        try:
            return fields.recipients, recipient_keys(self.config.registry, fields.recipients, now)
        except GatewayError:
            addressable = tuple(a for a in fields.recipients if self._addressable(a, fields, now))
            return addressable, recipient_keys(self.config.registry, addressable, now)

    def _addressable(self, agency: str, fields: HeaderFields, now: datetime) -> bool:
        try:
            recipient_keys(self.config.registry, [agency], now)
        except GatewayError as exc:
            log.error(
                "escalation.unaddressable",
                message_id=fields.message_id,  # the first of the batch's escalations to it
                agency=agency,
                reason=str(exc),
            )
            return False
        return True

    async def _seal(self, chunk: list[Outgoing]) -> list[bytes]:
        pool = self._pool
        if pool is not None and (pool.broken or pool.key_id != self.signer.key_id):
            pool.close()  # a dead or hung worker, or a new key
            pool = self._pool = None
        if pool is None:
            if self._worker_allowed and len(chunk) >= WORKER_FROM:
                self._pool = SealerPool(self.signer)  # ready for the burst's next chunk
            return [seal_bytes(f, payload, self.signer, keys) for _, f, payload, keys in chunk]
        return await pool.seal([sealer_pool.job(f, payload, keys) for _, f, payload, keys in chunk])

    async def _send_chunk(self, chunk: list[Outgoing], channels: EscalatorChannels) -> None:
        """Every copy of the chunk's escalations, confirms awaited together; then their events.

        One flat gather, not one per escalation: fewer tasks and futures per copy.
        """
        sealed = await self._seal(chunk)
        refused = await asyncio.gather(
            *(
                _copy(channels, body, fields, agency)
                for (_, fields, _, _), body in zip(chunk, sealed, strict=True)
                for agency in fields.recipients
            )
        )
        for fields, agency in (r for r in refused if r is not None):
            metrics.ESCALATION_COPIES_REFUSED.labels(agency=agency).inc()
            log.error(
                "escalation.copy_refused",
                message_id=fields.message_id,
                agency=agency,
                reason=f"the inbox of {agency} is missing or full",
            )
        for plan, _, _, _ in chunk:
            await self._announce(plan, channels)

    async def _announce(self, plan: EscalationPlan, channels: EscalatorChannels) -> None:
        """A notification for dashboards and other listeners, not a record (the inbox
        copies, the store and the audit are): published on a channel without confirms,
        so announcing never slows the ladder."""
        deadline = plan.deadline
        await channels.events.publish(
            aio_pika.Message(
                json.dumps(_event(plan), sort_keys=True).encode(),
                content_type="application/json",
                delivery_mode=DeliveryMode.PERSISTENT,
                message_id=plan.message_id,
                correlation_id=deadline.correlation_id,
                type="deadline.escalated",
            ),
            routing_key=EVENT_ROUTING_KEY.format(level=plan.level),
            mandatory=False,  # no listener is not an error
        )
        metrics.ESCALATIONS.labels(kind=deadline.kind.value, level=str(plan.level)).inc()
        log.debug(
            "deadline.escalated",
            message_id=plan.message_id,
            correlation_id=deadline.correlation_id,
            deadline_id=deadline.deadline_id,
            kind=deadline.kind.value,
            level=plan.level,
            rag=deadline.rag,
            silent_agency=deadline.debtor,
            recipients=list(plan.recipients),
        )


async def _copy(
    channels: EscalatorChannels, body: bytes, fields: HeaderFields, agency: str
) -> tuple[HeaderFields, str] | None:
    """Publish one copy; ``(fields, agency)`` if the agency's inbox refused it as full or missing.

    A refused copy does not hold the batch back: an agency whose inbox is full
    is not reading it (its system has been down for a while, which is often why
    the deadline passed), and retrying would put every other agency's
    escalations in the same batches behind it, tick after tick. The
    escalation still fires for its other recipients (the hub among them), the
    breach stays in the store and ``overdue``, and the refusal is logged and
    counted. A nack from an inbox with room is transient (a quorum queue
    electing a leader) and raised: the batch is not recorded and fires again.
    """
    try:
        await publish(
            channels.deliver,
            body,
            routing_key=agency,
            message_id=fields.message_id,
            correlation_id=fields.correlation_id,
            message_type=fields.message_type,
        )
    except PublishNacked:
        if await channels.room.full(agency):
            return fields, agency
        raise
    except PublishRefused:
        return fields, agency
    return None


def _payload(plan: EscalationPlan) -> bytes:
    deadline = plan.deadline
    return notices.escalation(
        deadline.message_id,
        deadline.correlation_id,
        deadline.kind.value,
        plan.level,
        deadline.rag,
        deadline.due_at,
        plan.escalated_at,
        deadline.debtor,
        plan.contacts,
    )


def _decision(plan: EscalationPlan, fields: HeaderFields) -> audit_chain.Decision:
    return audit_chain.Decision(
        message_id=fields.message_id,
        correlation_id=fields.correlation_id,
        sender=fields.sender,
        message_type=fields.message_type,
        recipients=fields.recipients,
        purpose=fields.purpose,
        lawful_bases=fields.lawful_bases,
        header_sha256=None,
        outcome=audit_chain.Outcome.ROUTED,
        reason=f"{plan.deadline.kind.value} deadline level {plan.level}",
        refers_to=fields.in_reply_to,
    )


def _event(plan: EscalationPlan) -> dict[str, object]:
    """The event on ``mash.events``: ids, kinds and agencies only."""
    deadline = plan.deadline
    return {
        "event": "deadline.escalated",
        "escalation_id": plan.message_id,
        "deadline_id": deadline.deadline_id,
        "message_id": deadline.message_id,
        "correlation_id": deadline.correlation_id,
        "kind": deadline.kind.value,
        "level": plan.level,
        "rag": deadline.rag,
        "silent_agency": deadline.debtor,
        "waiting_agency": deadline.creditor,
        "due_at": deadline.due_at.isoformat(),
        "escalated_at": plan.escalated_at.isoformat(),
        "recipients": list(plan.recipients),
    }


async def run_escalator(
    escalator: Escalator,
    channels: EscalatorChannels,
    stop: asyncio.Event,
    tick_s: float = DEFAULT_TICK_S,
) -> None:
    """Tick until ``stop``; a failed tick is logged and retried, never ends the service."""
    counted_at = -COUNTS_EVERY_S
    async with escalator.sealing_worker():
        while not stop.is_set():
            try:
                await escalator.tick(channels)
                if time.monotonic() - counted_at >= COUNTS_EVERY_S:
                    await escalator.refresh_counts()
                    counted_at = time.monotonic()
            except (TimeoutError, GatewayError, ConnectionError) as exc:
                log.error("escalator.tick_failed", reason=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
