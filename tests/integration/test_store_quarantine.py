"""The store's quarantine, on SQLite and PostgreSQL: kept once, filtered, settled once, expired."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.lifecycle import Event
from gateway.core.quarantine import Cause, Entry, Facts, Filter, Status, Totals
from gateway.core.records import MessageRecord, Transition
from gateway.store import TrackingStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def entry(n: int, check: str = "policy", sender: str = "police", at: datetime = T0) -> Entry:
    return Entry(
        entry_id=f"e{n}",
        facts=Facts(f"m-{n}", "CASE-1", "Referral", sender, ("education", "hub"), T0),
        cause=Cause(check, f"reason {n}", "router"),
        quarantined_at=at,
        size=100 + n,
        body_sha256=f"{n:064d}",
    )


async def test_kept_once_filtered_and_read_back(store: TrackingStore) -> None:
    assert await store.keep_quarantined(entry(1), b"\x00sealed-1")
    assert not await store.keep_quarantined(replace(entry(1), entry_id="dup"), b"\x00sealed-1")
    await store.keep_quarantined(entry(2, "signature", "health", T0 + timedelta(hours=1)), b"b2")
    assert await store.quarantined_entry("e1") == entry(1)
    assert await store.quarantined_body("e1") == b"\x00sealed-1"
    assert [e.entry_id for e in await store.quarantined(Filter())] == ["e1", "e2"]
    assert [e.entry_id for e in await store.quarantined(Filter(check="signature"))] == ["e2"]
    assert [e.entry_id for e in await store.quarantined(Filter(agency="health"))] == ["e2"]
    assert [e.entry_id for e in await store.quarantined(Filter(agency="hub"))] == ["e1", "e2"]
    assert [e.entry_id for e in await store.quarantined(Filter(agency="edu"))] == []
    since = Filter(since=T0 + timedelta(minutes=30))
    assert [e.entry_id for e in await store.quarantined(since)] == ["e2"]
    assert await store.quarantine_totals() == Totals(2, 203)


async def test_settled_once_its_body_dropped_and_expired_by_age(store: TrackingStore) -> None:
    await store.keep_quarantined(entry(1), b"b1")
    await store.keep_quarantined(entry(2, at=T0 + timedelta(days=10)), b"b2")
    settled = await store.settle_quarantined("e1", Status.DISCARDED, T0, "carol", "sent in error")
    assert settled is not None and (settled.status, settled.settled_by) == (
        Status.DISCARDED,
        "carol",
    )
    assert await store.quarantined_body("e1") is None
    assert await store.settle_quarantined("e1", Status.RELEASED, T0, "dan", None) is None
    assert await store.keep_quarantined(entry(1), b"b1") is False  # same id, not held again
    expired = await store.expire_quarantined(T0 + timedelta(days=5), T0 + timedelta(days=30))
    assert expired == []  # e1 is settled; e2 is newer
    expired = await store.expire_quarantined(T0 + timedelta(days=11), T0 + timedelta(days=40))
    assert [(e.entry_id, e.status, e.settled_by) for e in expired] == [
        ("e2", Status.EXPIRED, "retention")
    ]
    assert await store.quarantine_totals() == Totals(0, 0)
    everything = await store.quarantined(Filter(status=None))
    assert [e.status for e in everything] == [Status.DISCARDED, Status.EXPIRED]


async def test_a_message_submitted_again_after_a_rejection_was_released(
    store: TrackingStore,
) -> None:
    message = MessageRecord("m-1", "CASE-1", None, "Referral", "police", ("hub",), None, None, T0)
    await store.admit(message, "digest-1", T0)
    assert not await store.was_released("m-1")  # submitted, never rejected
    await store.advance([Transition("m-1", Event.REJECTED, reason="policy: none")], T0)
    assert not await store.was_released("m-1")
    await store.advance([Transition("m-1", Event.RELEASED, detail="released by alice")], T0)
    assert await store.was_released("m-1")
    await store.advance([Transition("m-1", Event.ROUTED)], T0)
    assert not await store.was_released("m-1")  # routed: its release is done
    assert not await store.was_released("m-unknown")
