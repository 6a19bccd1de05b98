"""The deadline half of the TrackingStore contract, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.core import deadline_rules as rules
from gateway.core import deadlines as dl
from gateway.core.deadline_rules import Deadline, Kind
from gateway.core.envelope import HeaderFields
from gateway.core.lifecycle import Event, State
from gateway.core.records import (
    DeadlineChanges,
    DeadlineEvent,
    Fire,
    Firing,
    MessageRecord,
    Transition,
)
from gateway.store import TrackingStore
from gateway.store.postgres import PostgresStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
CASE = "case-2026-0042"
POLICY = dl.default_policy()
CONTACTS = (dl.EscalationContact("MASH team manager", "hub", email="managers@hub.example"),)


def routed(
    message_id: str,
    correlation_id: str,
    message_type: str,
    sender: str,
    recipients: tuple[str, ...],
    **facts: Any,
) -> HeaderFields:
    """The verified header the router would route (purpose and bases do not matter here)."""
    return HeaderFields(
        message_id,
        correlation_id,
        message_type,
        sender,
        recipients,
        T0,
        "child-safeguarding",
        ("uk-gdpr-6-1-e",),
        **facts,
    )


def request(
    message_id: str, rag: str = "Red", recipients: tuple[str, ...] = ("health",)
) -> HeaderFields:
    return routed(message_id, CASE, "InformationRequest", "hub", recipients, rag=rag)


async def route(store: TrackingStore, message: HeaderFields, at: datetime = T0) -> list[Deadline]:
    """Admit ``message`` and route it, opening its deadlines, as the router does."""
    await store.admit(
        MessageRecord(
            message.message_id,
            message.correlation_id,
            message.in_reply_to,
            message.message_type,
            message.sender,
            message.recipients,
            message.rag,
            None,
            at,
        ),
        f"digest-{message.message_id}",
        at,
    )
    opened = rules.opened_by(message, at, POLICY, "hub")
    changes = DeadlineChanges(opened=opened, closures=rules.closed_by(message, "hub"))
    await store.advance([Transition(message.message_id, Event.ROUTED, deadlines=changes)], at)
    return opened


def by_id(deadlines: list[Deadline]) -> dict[str, Deadline]:
    return {d.deadline_id: d for d in deadlines}


def firer(now: datetime, seen: list[str]) -> Fire:
    async def fire(due: list[Deadline]) -> list[Firing]:
        firings = []
        for deadline in due:
            seen.append(deadline.deadline_id)
            plan = rules.plan_escalation(deadline, CONTACTS, POLICY, "gateway", now)
            record = MessageRecord(
                plan.message_id,
                CASE,
                deadline.message_id,
                "Escalation",
                "gateway",
                plan.recipients,
                deadline.rag,
                None,
                now,
            )
            firings.append(Firing(plan, record))
        return firings

    return fire


async def test_routing_opens_delivery_and_response_deadlines_once(store: TrackingStore) -> None:
    opened = await route(store, request("req-1", recipients=("health", "police")))
    await store.advance(
        [Transition("req-1", Event.ROUTED, deadlines=DeadlineChanges(opened=opened))], T0
    )
    found = by_id(await store.case_deadlines(CASE))
    assert set(found) == {d.deadline_id for d in opened} and len(found) == 4
    red = found[rules.deadline_id("req-1", Kind.RESPONSE, "police")]
    assert red.due_at == T0 + timedelta(hours=4) and red.next_at == red.due_at
    assert red.rag == "Red" and red.level == 0 and red.is_open and not red.breached


async def test_an_answer_meets_its_deadlines_and_a_late_one_records_the_breach(
    store: TrackingStore,
) -> None:
    await route(store, request("req-1", recipients=("health", "police")))
    on_time = routed("resp-h", CASE, "InformationResponse", "health", ("hub",), in_reply_to="req-1")
    late = routed("resp-p", CASE, "InformationResponse", "police", ("hub",), in_reply_to="req-1")
    await route(store, on_time, T0 + timedelta(hours=1))
    await route(store, late, T0 + timedelta(hours=5))
    found = by_id(await store.case_deadlines(CASE))
    health = found[rules.deadline_id("req-1", Kind.RESPONSE, "health")]
    police = found[rules.deadline_id("req-1", Kind.RESPONSE, "police")]
    assert health.closed_by == "resp-h" and not health.breached and health.next_at is None
    assert police.closed_by == "resp-p" and police.breached
    events = {(e.deadline_id, e.event) for e in await store.case_deadline_events(CASE)}
    assert (health.deadline_id, DeadlineEvent.MET) in events
    assert (police.deadline_id, DeadlineEvent.MET_LATE) in events


async def test_a_negative_receipt_ends_what_the_recipient_owed(store: TrackingStore) -> None:
    await route(store, request("req-1"))
    receipt = routed(
        "rcpt-1",
        CASE,
        "DeliveryReceipt",
        "health",
        ("hub",),
        in_reply_to="req-1",
        receipt_outcome="negative",
    )
    await store.admit(
        MessageRecord(
            "rcpt-1", CASE, "req-1", "DeliveryReceipt", "health", ("hub",), None, None, T0
        ),
        "digest-rcpt-1",
        T0,
    )
    changes = DeadlineChanges(closures=rules.closed_by(receipt, "hub"))
    await store.advance([Transition("rcpt-1", Event.ROUTED, deadlines=changes)], T0)
    assert all(not d.is_open for d in await store.case_deadlines(CASE))
    ended = [e for e in await store.case_deadline_events(CASE) if e.event is DeadlineEvent.ENDED]
    assert len(ended) == 2 and ended[0].reason == "negative receipt from health"


async def test_a_rag_change_reschedules_from_the_original_start(store: TrackingStore) -> None:
    await route(store, request("req-1", rag="Green"))
    rerate = routed("dec-1", CASE, "Decision", "hub", ("police",), rag="Red")
    changes = rules.rerated(rerate, await store.case_deadlines(CASE), POLICY, "hub")
    assert len(changes) == 1
    await store.advance(
        [Transition("req-1", Event.ROUTED, deadlines=DeadlineChanges(reschedules=changes))], T0
    )
    await store.advance(
        [Transition("req-1", Event.ROUTED, deadlines=DeadlineChanges(reschedules=changes))], T0
    )
    response = by_id(await store.case_deadlines(CASE))[
        rules.deadline_id("req-1", Kind.RESPONSE, "health")
    ]
    assert response.rag == "Red" and response.due_at == T0 + timedelta(hours=4)
    rerated = [
        e for e in await store.case_deadline_events(CASE) if e.event is DeadlineEvent.RERATED
    ]
    assert len(rerated) == 1 and "Green to Red" in (rerated[0].reason or "")


async def test_fire_due_hands_over_only_what_is_due_and_records_each_level_once(
    store: TrackingStore,
) -> None:
    await route(store, request("req-1"))  # delivery due at +15 min, response at +4 h
    seen: list[str] = []
    assert await store.fire_due(T0 + timedelta(minutes=14), 100, firer(T0, seen)) == 0
    assert seen == []
    at = T0 + timedelta(minutes=15)
    assert await store.fire_due(at, 100, firer(at, seen)) == 1
    delivery = rules.deadline_id("req-1", Kind.DELIVERY, "health")
    assert seen == [delivery]
    fired = by_id(await store.case_deadlines(CASE))[delivery]
    assert fired.level == 1 and fired.breached and fired.next_at == at + timedelta(minutes=60)
    # Nothing more until the grace has passed; then level 2, then nothing ever again.
    assert await store.fire_due(at + timedelta(minutes=59), 100, firer(at, seen)) == 0
    later = at + timedelta(minutes=60)
    assert await store.fire_due(later, 100, firer(later, seen)) == 1
    assert await store.fire_due(later + timedelta(days=30), 100, firer(later, seen)) == 1
    assert seen.count(delivery) == 2  # the last call fired the response deadline, not this one
    escalations = [m for m in await store.case_messages(CASE) if m.message_type == "Escalation"]
    assert len(escalations) == 3 and {m.state for m in escalations} == {State.ROUTED}


async def test_a_firing_repeated_after_a_crash_is_recorded_once(store: TrackingStore) -> None:
    await route(store, request("req-1"))
    at = T0 + timedelta(minutes=15)
    due: list[Deadline] = []

    async def capture(found: list[Deadline]) -> list[Firing]:
        due.extend(found)
        return await firer(at, [])(found)

    assert await store.fire_due(at, 100, capture) == 1

    async def replay(found: list[Deadline]) -> list[Firing]:
        return await firer(at, [])(due)  # the same deadline at the same level, again

    await store.fire_due(at + timedelta(hours=5), 100, replay)
    events = [
        e for e in await store.case_deadline_events(CASE) if e.event is DeadlineEvent.ESCALATED
    ]
    assert [(e.deadline_id, e.level) for e in events].count((due[0].deadline_id, 1)) == 1


async def test_a_failed_firing_records_nothing_and_stays_due(store: TrackingStore) -> None:
    await route(store, request("req-1"))
    at = T0 + timedelta(minutes=15)

    async def broker_down(due: list[Deadline]) -> list[Firing]:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        await store.fire_due(at, 100, broker_down)
    seen: list[str] = []
    assert await store.fire_due(at, 100, firer(at, seen)) == 1 and len(seen) == 1


async def test_counts_and_overdue_list_name_agencies_and_ids_only(store: TrackingStore) -> None:
    await route(store, request("req-1", rag="Red", recipients=("health", "police")))
    answer = routed("resp-h", CASE, "InformationResponse", "health", ("hub",), in_reply_to="req-1")
    await route(store, answer, T0 + timedelta(hours=6))
    now = T0 + timedelta(hours=7)
    counts = {(c.agency, c.kind, c.rag): c for c in await store.deadline_counts(now)}
    police = counts[("police", "response", "Red")]
    assert (police.open, police.overdue, police.breached) == (1, 1, 1)
    health = counts[("health", "response", "Red")]
    assert (health.open, health.overdue, health.breached) == (0, 0, 1)
    overdue = await store.overdue_deadlines(now, 10)
    # Most overdue first; the hub has not receipted health's response either.
    assert [(d.debtor, d.kind) for d in overdue] == [
        ("police", Kind.DELIVERY),
        ("police", Kind.RESPONSE),
        ("hub", Kind.DELIVERY),
    ]


async def test_two_stores_never_fire_the_same_deadline_together(
    store: TrackingStore, make_store: Callable[[], TrackingStore]
) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("one router per SQLite file: only PostgreSQL is shared by several routers")
    for n in range(40):
        await route(store, request(f"req-{n}"))
    other = make_store()
    await other.open()
    try:
        at = T0 + timedelta(days=30)
        first: list[str] = []
        second: list[str] = []

        def slow(seen: list[str]) -> Fire:
            async def fire(due: list[Deadline]) -> list[Firing]:
                await asyncio.sleep(0.2)  # hold the rows while the other store looks
                return await firer(at, seen)(due)

            return fire

        await asyncio.gather(
            store.fire_due(at, 50, slow(first)),
            other.fire_due(at, 50, slow(second)),
        )
        assert first and second and not set(first) & set(second)
        assert len(first) + len(second) == 80
    finally:
        await other.close()


async def test_batches_fired_at_once_by_one_store_never_share_a_deadline(
    store: TrackingStore,
) -> None:
    """The escalator keeps two batches in flight: the second passes over what the first holds."""
    for n in range(40):
        await route(store, request(f"req-{n}"))
    at = T0 + timedelta(days=30)
    first: list[str] = []
    second: list[str] = []

    def slow(seen: list[str]) -> Fire:
        async def fire(due: list[Deadline]) -> list[Firing]:
            await asyncio.sleep(0.2)  # hold the rows while the other batch claims
            return await firer(at, seen)(due)

        return fire

    counts = await asyncio.gather(
        store.fire_due(at, 50, slow(first)), store.fire_due(at, 50, slow(second))
    )
    assert first and second and not set(first) & set(second)
    assert sorted(counts) == [30, 50] and len(first) + len(second) == 80
