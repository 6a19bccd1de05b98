"""The quarantine keeper: keeps quarantined copies in the store, and does operators' actions.

``gateway.quarantine`` is a queue: it cannot be listed, searched or picked
from by id without consuming it. So the keeper takes each copy off it into
the tracking store (header facts, the failed check and reason, the sealed
envelope as it was), acking only once the copy is kept, and serves list,
show, release and discard from there. The CLI (``mash-gateway quarantine``)
and the console call this class; it is the one place those actions live.

- **Release** publishes the original envelope, byte for byte (same message
  id, same signature), to its claimed sender's own ingress
  (``mash.ingress.<sender>``, where that agency's own messages queue), so
  the router judges it again
  with today's registry and agreements. A message the router had recorded
  ``rejected`` is moved back to ``submitted`` first (lifecycle event
  ``released``, in its timeline): the router routes a copy only in
  ``submitted`` or ``routed`` and would otherwise skip it as done. If it
  fails again, the router quarantines it again with its reason, and the
  keeper takes it as a new entry (``outcome`` reports that).
- **Discard** drops the copy, keeping the row and the operator's reason.
- **Retention**: held copies older than ``[quarantine] retention_days`` are
  expired at each ``collect``. **Size**: past ``max_messages`` or
  ``max_bytes`` held, ``collect`` takes no more off the queue: they wait in
  RabbitMQ, never dropped, and ``mash_gateway_quarantine_held`` against its
  limits drives the alert that fires before that happens.
- **Audit**: every action is a record in the keeper's own audit chain
  (``state/audit-quarantine.jsonl``: a chain has one writer, and the
  router's is the router's), naming the operator, signed at close by the
  gateway principal's key and its head kept in the store, so ``audit verify
  --file state/audit-quarantine.jsonl`` checks it like the router's.

It logs in as its own broker user (``<prefix>quarantine-keeper``: read
``gateway.quarantine``, write every agency's ``mash.ingress.<id>``;
gateway/broker/definitions.py) once ``broker setup`` issued it a password,
else with the area's URL. A copy whose claimed sender is not an agency of
the area has no ingress and cannot be released (core/quarantine.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractQueue, AbstractRobustConnection

from gateway.broker import topology
from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.credentials import keeper_login
from gateway.broker.publisher import publish
from gateway.config.area_config import AreaConfig
from gateway.core import audit_chain
from gateway.core.audit_chain import Decision
from gateway.core.lifecycle import Event, State
from gateway.core.quarantine import (
    Entry,
    Filter,
    QuarantineError,
    Status,
    cause_of,
    discard_refusal,
    expiry_cutoff,
    facts_of,
    release_refusal,
    room_for,
)
from gateway.core.records import MessageRecord, Transition
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services import audit_log, health, metrics
from gateway.store import QuarantineStore, TrackingStore

log = structlog.get_logger("gateway.services.quarantine_keeper")

AUDIT_FILE = "audit-quarantine.jsonl"
RELEASED_HEADER = "x-mash-released-from"  # the entry a released copy came from (for the logs)
RETENTION_OPERATOR = "retention"
DONE_STATES = frozenset({State.DELIVERED, State.ANSWERED})
ACCEPTED_STATES = frozenset({State.ROUTED, *DONE_STATES})
AUDIT_LOCK_RETRIES = 50  # a second operator's action waits up to ~5 s for the chain's lock
POLL_S = 0.1


def audit_path(config: AreaConfig) -> Path:
    return config.base_dir / "state" / AUDIT_FILE


@dataclass(frozen=True)
class Collected:
    """One ``collect``: copies taken off the queue, whether the limit stopped it, what expired."""

    taken: int
    full: bool
    expired: tuple[Entry, ...]


@dataclass(frozen=True)
class Shown:
    """An entry, and the tracked message's state when the router recorded it (None: not tracked)."""

    entry: Entry
    state: State | None


@dataclass(frozen=True)
class Outcome:
    """What the router made of a released copy: routed, quarantined again, or not yet judged."""

    state: State | None  # the tracked state once judged
    again: Entry | None  # the new entry, if it failed again

    @property
    def judged(self) -> bool:
        """Routed, or quarantined again (a ``rejected`` state alone may precede its new copy)."""
        return self.again is not None or self.state in ACCEPTED_STATES


class QuarantineKeeper:
    """List, show, release and discard quarantined messages; ``async with`` connects it."""

    def __init__(
        self,
        config: AreaConfig,
        store: TrackingStore,
        broker_url: str | None = None,
        audit_file: Path | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.policy = config.quarantine
        self._url = broker_url or keeper_login(config).url
        self._audit_file = audit_file or audit_path(config)
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._ingress: dict[str, AbstractExchange] = {}  # each agency's, by agency id
        self._unready: Callable[[], None] = lambda: None  # removes its /readyz check

    async def __aenter__(self) -> QuarantineKeeper:
        self._connection = await connect(self._url, self.config.broker_tls)
        try:
            channel = await confirmed_channel(self._connection)
            kind, name = "queue", topology.QUARANTINE_QUEUE
            try:  # passive: the keeper's user may not declare (broker setup does)
                self._queue = await channel.get_queue(name, ensure=True)
                for agency in self.config.inbox_agencies:
                    kind, name = "exchange", topology.ingress_exchange(agency)
                    self._ingress[agency] = await channel.get_exchange(name, ensure=True)
            except aio_pika.exceptions.ChannelNotFoundEntity as exc:
                raise topology.missing(kind, name, exc) from exc
        except BaseException:
            await self._connection.close()
            raise
        self._unready = health.READINESS.add(
            "broker (quarantine keeper)", health.broker_connected(self._connection)
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unready()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def collect(self, now: datetime | None = None) -> Collected:
        """Expire what outlived the retention period, then take copies off the queue while
        there is room; each is acked only once kept."""
        now = now or utc_now()
        expired = await self.store.expire_quarantined(expiry_cutoff(now, self.policy), now)
        if expired:
            await self._audit(
                [
                    _decision(
                        e,
                        audit_chain.Outcome.EXPIRED,
                        RETENTION_OPERATOR,
                        "past the retention period",
                    )
                    for e in expired
                ],
                now,
            )
            metrics.QUARANTINE_ACTIONS.labels(action="expired").inc(len(expired))
        queue = self._connected(self._queue)
        taken, full = 0, False
        while True:
            totals = await self.store.quarantine_totals()
            if not room_for(totals, self.policy):
                full = True
                log.error("quarantine.full", held=totals.messages, bytes=totals.bytes)
                break
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            body = message.body
            entry = Entry(
                entry_id=uuid.uuid4().hex[:12],
                facts=facts_of(body, message.message_id),
                cause=cause_of(message.headers or {}),
                quarantined_at=utc_now(),
                size=len(body),
                body_sha256=hashlib.sha256(body).hexdigest(),
            )
            if await self.store.keep_quarantined(entry, body):
                taken += 1
                log.info(
                    "quarantine.kept",
                    entry=entry.entry_id,
                    message_id=entry.facts.message_id,
                    check=entry.cause.check,
                )
            await message.ack()
        metrics.QUARANTINE_ACTIONS.labels(action="kept").inc(taken)
        await self._gauges()
        return Collected(taken, full, tuple(expired))

    async def entries(self, which: Filter) -> list[Entry]:
        """The entries ``which`` selects, after collecting what is waiting on the queue."""
        await self.collect()
        return await self.store.quarantined(which)

    async def show(self, entry_id: str) -> Shown:
        await self.collect()
        entry = await self._entry(entry_id)
        record = await self.store.message(entry.facts.message_id)
        return Shown(entry, record.state if record is not None else None)

    async def release(self, entry_id: str, operator: str) -> Entry:
        """Send the original envelope back to the router; the settled entry.

        Raises QuarantineError for an entry already released, discarded or
        expired, or one whose message was delivered since.
        """
        await self.collect()
        entry = await self._entry(entry_id)
        refusal = release_refusal(entry, list(self._ingress))
        if refusal is not None:
            raise QuarantineError(refusal)
        record = await self.store.message(entry.facts.message_id)
        if record is not None and record.state in DONE_STATES:
            raise QuarantineError(
                f"message {record.message_id} of quarantined {entry_id} is {record.state.value} "
                "already: releasing it would deliver it twice; discard it instead"
            )
        body = await self.store.quarantined_body(entry_id)
        if body is None:
            raise QuarantineError(f"quarantined {entry_id} was settled meanwhile; list it again")
        now = utc_now()
        note = "released to the router"
        await self._audit([_decision(entry, audit_chain.Outcome.RELEASED, operator, note)], now)
        if record is not None and record.state is State.REJECTED:
            await self._reopen(record, entry_id, operator, now)
        assert entry.facts.sender is not None  # release_refusal: one of the area's agencies
        await publish(
            self._ingress[entry.facts.sender],
            body,
            routing_key=topology.INGRESS_ROUTING_KEY,
            message_id=entry.facts.message_id,
            headers={RELEASED_HEADER: entry_id},
        )
        return await self._settle(entry, Status.RELEASED, now, operator, None)

    async def outcome(self, released: Entry, wait_s: float) -> Outcome:
        """Wait up to ``wait_s`` for the router to judge a released copy."""
        deadline = time.monotonic() + wait_s
        while True:
            await self.collect()
            again = await quarantined_again(self.store, released)
            record = await self.store.message(released.facts.message_id)
            found = Outcome(record.state if record is not None else None, again)
            if found.judged or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(POLL_S)

    async def discard(self, entry_id: str, reason: str, operator: str) -> Entry:
        """Drop the copy for good, keeping the row and the reason; the settled entry."""
        if not reason.strip():
            raise QuarantineError("a discard needs a --reason (ids and checks, no personal data)")
        await self.collect()
        entry = await self._entry(entry_id)
        refusal = discard_refusal(entry)
        if refusal is not None:
            raise QuarantineError(refusal)
        now = utc_now()
        await self._audit([_decision(entry, audit_chain.Outcome.DISCARDED, operator, reason)], now)
        return await self._settle(entry, Status.DISCARDED, now, operator, reason)

    async def _settle(
        self, entry: Entry, status: Status, now: datetime, operator: str, reason: str | None
    ) -> Entry:
        """Record an operator's release or discard, once: another's first one wins."""
        settled = await self.store.settle_quarantined(entry.entry_id, status, now, operator, reason)
        if settled is None:
            raise QuarantineError(
                f"quarantined {entry.entry_id} was settled by someone else meanwhile"
            )
        metrics.QUARANTINE_ACTIONS.labels(action=status.value).inc()
        await self._gauges()
        log.info(
            f"quarantine.{status.value}", entry=entry.entry_id, message_id=entry.facts.message_id
        )
        return settled

    async def _entry(self, entry_id: str) -> Entry:
        entry = await self.store.quarantined_entry(entry_id)
        if entry is None:
            raise QuarantineError(
                f"no quarantined message {entry_id!r}: `mash-gateway quarantine list` shows them"
            )
        return entry

    async def _reopen(
        self, record: MessageRecord, entry_id: str, operator: str, now: datetime
    ) -> None:
        """``rejected`` back to ``submitted``: the router judges the copy instead of skipping it."""
        step = Transition(
            record.message_id,
            Event.RELEASED,
            detail=f"released from quarantine {entry_id} by {operator}",
        )
        await self.store.advance([step], now)

    async def _audit(self, decisions: Sequence[Decision], now: datetime) -> None:
        """Append to the keeper's chain, signed at close; waits its turn behind another action."""
        signer = keystore.load_signing_identity(self.config, self.config.gateway, now)
        for attempt in range(AUDIT_LOCK_RETRIES):
            try:
                chain = await audit_log.open_kept(self.config, self._audit_file, signer, self.store)
                break
            except audit_log.AuditLogError:
                if attempt == AUDIT_LOCK_RETRIES - 1:
                    raise
                await asyncio.sleep(POLL_S)
        try:
            await asyncio.to_thread(chain.append_all, [(d, now) for d in decisions])
        finally:
            await chain.aclose(now)

    async def _gauges(self) -> None:
        totals = await self.store.quarantine_totals()
        metrics.set_quarantine_held(
            totals.messages, totals.bytes, self.policy.max_messages, self.policy.max_bytes
        )

    def _connected(self, thing: AbstractQueue | None) -> AbstractQueue:
        if thing is None:
            raise QuarantineError("the quarantine keeper is not connected: use `async with`")
        return thing


async def quarantined_again(store: QuarantineStore, released: Entry) -> Entry | None:
    """A copy of the released message quarantined after the release, if the keeper has taken
    one in: the release failed again (`quarantine release` and the console's entry page)."""
    assert released.settled_at is not None  # a released entry is settled
    for entry in await store.quarantined(Filter(since=released.settled_at, status=None)):
        if entry.facts.message_id == released.facts.message_id and entry != released:
            return entry
    return None


def _decision(entry: Entry, outcome: audit_chain.Outcome, operator: str, reason: str) -> Decision:
    """An operator's action on a quarantined copy, in header facts only."""
    f = entry.facts
    return Decision(
        message_id=f.message_id,
        correlation_id=f.correlation_id,
        sender=f.sender,
        message_type=f.message_type,
        recipients=f.recipients,
        purpose=None,
        lawful_bases=(),
        header_sha256=None,
        outcome=outcome,
        check=entry.cause.check,
        reason=f"{reason} (quarantine entry {entry.entry_id})",
        operator=operator,
    )
