"""The TrackingStore contract, run against every implementation of the ``store`` fixture."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.core.deadline_rules import Closure, Deadline, Kind
from gateway.core.envelope import SealedAttachment
from gateway.core.lifecycle import Event, IllegalTransition, Outcome, State
from gateway.core.records import (
    Admission,
    AuditHead,
    ClaimResult,
    DeadlineChanges,
    MessageRecord,
    TimelineEntry,
    Transition,
)
from gateway.store import StoreError, TrackingStore, store_from_url
from gateway.store.migrations import MIGRATIONS
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CASE = "case-2026-0001"


def record(message_id: str, **changes: object) -> MessageRecord:
    facts: dict[str, object] = {
        "message_id": message_id,
        "correlation_id": CASE,
        "in_reply_to": None,
        "message_type": "InformationRequest",
        "sender": "hub",
        "recipients": ("health", "police", "csc"),
        "rag": "Red",
        "deadline": T0 + timedelta(hours=4),
        "created_at": T0,
    }
    return MessageRecord(**{**facts, **changes})  # type: ignore[arg-type]


async def admit(store: TrackingStore, message: MessageRecord, at: datetime) -> Admission:
    """Admit ``message`` as the router does, its header digest named for its id."""
    return await store.admit(message, f"digest-{message.message_id}", at)


async def test_an_admitted_message_reads_back_with_its_facts(store: TrackingStore) -> None:
    assert await admit(store, record("m-1"), T0) == Admission(ClaimResult.FIRST, State.SUBMITTED)
    assert await store.message("m-1") == record("m-1")
    assert await store.message("m-unknown") is None


async def test_a_messages_attachment_sections_read_back_in_order(store: TrackingStore) -> None:
    sections = (SealedAttachment("ab" * 32, 6 * 1024**3), SealedAttachment("cd" * 32, 17))
    await admit(store, record("m-1", attachments=sections), T0)
    await admit(store, record("m-2", correlation_id="other"), T0)
    assert await store.message("m-1") == record("m-1", attachments=sections)
    assert [m.attachments for m in await store.case_messages(CASE)] == [sections]
    assert (await store.message("m-2")) == record("m-2", correlation_id="other")


async def test_admitting_the_same_message_twice_changes_nothing(store: TrackingStore) -> None:
    await admit(store, record("m-1"), T0)
    await store.advance([Transition("m-1", Event.ROUTED)], T0 + timedelta(seconds=1))
    again = await admit(store, record("m-1", sender="other"), T0 + timedelta(seconds=2))
    assert again == Admission(ClaimResult.REPEAT, State.ROUTED)
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED, State.ROUTED]
    assert (await store.message("m-1")) == record("m-1", state=State.ROUTED)


async def test_every_transition_is_timestamped_in_order(store: TrackingStore) -> None:
    await admit(store, record("m-1"), T0)
    plus = [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
    await store.advance([Transition("m-1", Event.ROUTED, detail="to health,police,csc")], plus[0])
    await store.advance(
        [Transition("m-1", Event.RECEIPTED_POSITIVE, detail="sha256:ab12")], plus[1]
    )
    await store.advance([Transition("m-1", Event.ANSWERED)], plus[2])
    assert await store.timeline("m-1") == [
        TimelineEntry("m-1", State.SUBMITTED, T0),
        TimelineEntry("m-1", State.ROUTED, plus[0], detail="to health,police,csc"),
        TimelineEntry("m-1", State.DELIVERED, plus[1], detail="sha256:ab12"),
        TimelineEntry("m-1", State.ANSWERED, plus[2]),
    ]
    assert (await store.message("m-1")).state is State.ANSWERED  # type: ignore[union-attr]


async def test_timestamps_come_back_in_utc_whatever_zone_went_in(store: TrackingStore) -> None:
    bst = timezone(timedelta(hours=1))
    await admit(store, record("m-1", created_at=T0.astimezone(bst)), T0)
    await store.advance([Transition("m-1", Event.ROUTED)], datetime(2026, 6, 1, 10, 0, 0, 5, bst))
    got = await store.message("m-1")
    assert got is not None and got.created_at == T0 and got.created_at.tzinfo is UTC
    routed = (await store.timeline("m-1"))[-1].at
    assert routed == datetime(2026, 6, 1, 9, 0, 0, 5, UTC)


async def test_naive_timestamps_are_refused_and_write_nothing(store: TrackingStore) -> None:
    with pytest.raises(StoreError, match="has no timezone"):
        await admit(store, record("m-1"), datetime(2026, 1, 5, 9, 0))
    with pytest.raises(StoreError, match="has no timezone"):
        await admit(store, record("m-1", created_at=datetime(2026, 1, 5, 9, 0)), T0)
    assert await store.message("m-1") is None
    await admit(store, record("m-1"), T0)
    with pytest.raises(StoreError, match="has no timezone"):
        await store.advance([Transition("m-1", Event.ROUTED)], datetime(2026, 1, 5, 9, 0))
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED]


async def test_rejection_keeps_its_reason(store: TrackingStore) -> None:
    await admit(store, record("m-1"), T0)
    with pytest.raises(StoreError, match="m-1: a rejected transition needs a reason"):
        await store.advance([Transition("m-1", Event.REJECTED)], T0)
    reason = "agreement isa-01 does not allow lawful basis cda-1998-s115"
    await store.advance([Transition("m-1", Event.REJECTED, reason=reason)], T0)
    assert (await store.timeline("m-1"))[-1] == TimelineEntry("m-1", State.REJECTED, T0, reason)


async def test_claims_tell_first_sighting_redelivery_and_replay(store: TrackingStore) -> None:
    assert (await store.admit(record("m-1"), "digest-a", T0)).claim is ClaimResult.FIRST
    assert (await store.admit(record("m-1"), "digest-a", T0)).claim is ClaimResult.REPEAT
    assert (await store.admit(record("m-1"), "digest-b", T0)).claim is ClaimResult.REPLAY
    assert (await store.admit(record("m-2"), "digest-b", T0)).claim is ClaimResult.FIRST


async def test_concurrent_admissions_of_one_id_have_exactly_one_winner(
    store: TrackingStore,
) -> None:
    results = await asyncio.gather(*(store.admit(record("m-1"), "d", T0) for _ in range(20)))
    assert sorted(r.claim for r in results) == sorted(
        [ClaimResult.FIRST] + [ClaimResult.REPEAT] * 19
    )
    assert {r.state for r in results} == {State.SUBMITTED}
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED]


async def test_admit_claims_and_records_in_one_step(store: TrackingStore) -> None:
    first = await store.admit(record("m-1"), "digest-a", T0)
    assert first == Admission(ClaimResult.FIRST, State.SUBMITTED)
    await store.advance([Transition("m-1", Event.ROUTED)], T0 + timedelta(seconds=1))
    again = await store.admit(record("m-1"), "digest-a", T0 + timedelta(seconds=2))
    assert again == Admission(ClaimResult.REPEAT, State.ROUTED)
    assert await store.admit(record("m-1"), "digest-b", T0) == Admission(ClaimResult.REPLAY, None)
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED, State.ROUTED]


async def test_advance_applies_the_lifecycle_and_ignores_repeats(store: TrackingStore) -> None:
    await store.admit(record("m-1"), "d", T0)
    (routed,) = await store.advance([Transition("m-1", Event.ROUTED)], T0)
    assert routed == Outcome(State.ROUTED, changed=True)
    (repeat,) = await store.advance([Transition("m-1", Event.ROUTED)], T0 + timedelta(seconds=1))
    assert repeat == Outcome(State.ROUTED, changed=False)
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED, State.ROUTED]
    assert await store.advance([Transition("nope", Event.ROUTED)], T0) == [None]


async def test_an_illegal_advance_writes_nothing(store: TrackingStore) -> None:
    await store.admit(record("m-1"), "d", T0)
    (refused,) = await store.advance([Transition("m-1", Event.RECEIPTED_POSITIVE)], T0)
    assert isinstance(refused, IllegalTransition)
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED]


async def test_one_advance_records_a_receipt_and_its_original_together(
    store: TrackingStore,
) -> None:
    await store.admit(record("m-1"), "d", T0)
    owed = Deadline(
        "m-1/delivery/health", "m-1", CASE, Kind.DELIVERY, "health", "hub", None, T0, T0, T0
    )
    opened = DeadlineChanges(opened=[owed])
    await store.advance([Transition("m-1", Event.ROUTED, deadlines=opened)], T0)
    receipt = record("r-1", message_type="DeliveryReceipt", sender="health", recipients=("hub",))
    await store.admit(receipt, "d", T0)
    at = T0 + timedelta(seconds=1)
    met = DeadlineChanges(closures=[Closure("health", "r-1", frozenset({Kind.DELIVERY}), "m-1")])
    results = await store.advance(
        [
            Transition("r-1", Event.ROUTED, deadlines=met),
            Transition("m-1", Event.RECEIPTED_POSITIVE, detail="receipted by health in r-1"),
            Transition("m-1", Event.RECEIPTED_NEGATIVE, reason="a contradicting receipt"),
            Transition("nope", Event.ROUTED),
        ],
        at,
    )
    assert results[:2] == [Outcome(State.ROUTED, True), Outcome(State.DELIVERED, True)]
    assert isinstance(results[2], IllegalTransition) and results[3] is None
    assert [e.state for e in await store.timeline("m-1")] == [
        State.SUBMITTED,
        State.ROUTED,
        State.DELIVERED,
    ]
    assert [e.state for e in await store.timeline("r-1")] == [State.SUBMITTED, State.ROUTED]
    (closed,) = await store.case_deadlines(CASE)
    assert (closed.closed_by, closed.closed_at) == ("r-1", at)


async def test_a_rejection_without_a_reason_writes_nothing_of_the_whole_advance(
    store: TrackingStore,
) -> None:
    await store.admit(record("m-1"), "d", T0)
    await store.admit(record("m-2"), "d", T0)
    with pytest.raises(StoreError, match="m-2: a rejected transition needs a reason"):
        await store.advance(
            [Transition("m-1", Event.ROUTED), Transition("m-2", Event.REJECTED)], T0
        )
    assert [e.state for e in await store.timeline("m-1")] == [State.SUBMITTED]


async def test_concurrent_writes_commit_each_alone_when_one_of_them_fails(
    store: TrackingStore,
) -> None:
    """SQLite commits concurrent callers' writes together (group commit): one caller's
    failure must undo its own work only, and every other caller's must stay."""
    ids = [f"m-{n}" for n in range(10)]
    await asyncio.gather(*(store.admit(record(i), "d", T0) for i in ids))

    async def advance(message_id: str) -> object:
        event = Event.REJECTED if message_id == "m-4" else Event.ROUTED  # m-4 has no reason
        return await store.advance([Transition(message_id, event)], T0)

    results = await asyncio.gather(*(advance(i) for i in ids), return_exceptions=True)
    failed = results.pop(4)
    assert isinstance(failed, StoreError) and "m-4: a rejected transition needs" in str(failed)
    assert results == [[Outcome(State.ROUTED, changed=True)]] * 9
    assert [e.state for e in await store.timeline("m-4")] == [State.SUBMITTED]
    for i in ids[:4] + ids[5:]:
        assert [e.state for e in await store.timeline(i)] == [State.SUBMITTED, State.ROUTED]
    marked = await asyncio.gather(*(store.mark_handled("police", i) for i in ids + ids))
    assert sorted(marked) == [False] * 10 + [True] * 10


async def test_mark_handled_is_true_once_per_agency(store: TrackingStore) -> None:
    assert not await store.was_handled("health", "m-1")
    assert await store.mark_handled("health", "m-1")
    assert await store.was_handled("health", "m-1")
    assert not await store.mark_handled("health", "m-1")
    assert not await store.was_handled("police", "m-1")
    assert await store.mark_handled("police", "m-1")


async def test_a_case_timeline_interleaves_its_messages(store: TrackingStore) -> None:
    referral = record("m-ref", message_type="Referral", sender="police", recipients=("hub",))
    request = record("m-req", created_at=T0 + timedelta(minutes=5))
    response = record(
        "m-resp",
        message_type="InformationResponse",
        sender="health",
        recipients=("hub",),
        in_reply_to="m-req",
        rag=None,
        deadline=None,
        created_at=T0 + timedelta(minutes=9),
    )
    other = record("m-other", correlation_id="case-2026-0002")
    await admit(store, referral, T0)
    await admit(store, other, T0)
    await store.advance([Transition("m-ref", Event.ROUTED)], T0 + timedelta(minutes=1))
    await admit(store, request, T0 + timedelta(minutes=5))
    await store.advance([Transition("m-req", Event.ROUTED)], T0 + timedelta(minutes=6))
    await admit(store, response, T0 + timedelta(minutes=9))
    await store.advance([Transition("m-req", Event.ANSWERED)], T0 + timedelta(minutes=10))

    assert [(e.message_id, e.state) for e in await store.case_timeline(CASE)] == [
        ("m-ref", State.SUBMITTED),
        ("m-ref", State.ROUTED),
        ("m-req", State.SUBMITTED),
        ("m-req", State.ROUTED),
        ("m-resp", State.SUBMITTED),
        ("m-req", State.ANSWERED),
    ]
    messages = await store.case_messages(CASE)
    assert [m.message_id for m in messages] == ["m-ref", "m-req", "m-resp"]
    assert messages[2].in_reply_to == "m-req" and messages[2].deadline is None
    assert messages[0].recipients == ("hub",)


async def test_data_survives_reopening_and_migrations_run_once(
    store: TrackingStore, make_store: Callable[[], TrackingStore]
) -> None:
    await admit(store, record("m-1"), T0)
    await store.close()
    again = make_store()
    await again.open()
    await again.open()  # a second open of an open store is harmless
    try:
        assert (await again.message("m-1")) == record("m-1")
    finally:
        await again.close()


async def test_an_audit_head_moves_on_only_from_the_one_its_writer_kept(
    store: TrackingStore,
) -> None:
    chain = "state/audit.jsonl"
    first = AuditHead(chain, 101, "a" * 64, T0)
    second = AuditHead(chain, 202, "b" * 64, T0 + timedelta(hours=1))
    assert await store.audit_head(chain) is None
    assert await store.keep_audit_head(first, None)
    assert not await store.keep_audit_head(AuditHead(chain, 101, "c" * 64, T0), None)  # a rival
    assert await store.audit_head(chain) == first
    assert await store.keep_audit_head(second, first)
    assert not await store.keep_audit_head(AuditHead(chain, 303, "d" * 64, T0), first)  # stale
    with pytest.raises(StoreError, match="a head only moves on"):
        await store.keep_audit_head(first, second)
    assert await store.audit_head(chain) == second
    assert await store.audit_head("state/audit-other.jsonl") is None


# SQLite specifics: the file's settings and the migration bookkeeping.


async def test_sqlite_file_uses_wal_foreign_keys_and_records_its_migrations(
    tmp_path: Path,
) -> None:
    path = tmp_path / "track.db"
    for _ in range(2):
        s = SqliteStore(str(path))
        await s.open()
        await s.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = raw.execute("SELECT version FROM schema_migrations").fetchall()
        assert rows == [(m.version,) for m in MIGRATIONS]
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            raw.execute("PRAGMA foreign_keys = ON")
            raw.execute(
                "INSERT INTO transitions (message_id, state, at) VALUES ('x', 'routed', 't')"
            )


async def test_a_store_newer_than_the_gateway_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "track.db"
    s = SqliteStore(str(path))
    await s.open()
    await s.close()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', 'x')")
    with pytest.raises(StoreError, match="schema version 999, newer than this gateway's"):
        await SqliteStore(str(path)).open()


async def test_an_unopenable_path_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "track.db"
    with pytest.raises(StoreError, match=f"cannot open tracking store {missing}"):
        await SqliteStore(str(missing)).open()


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = store_from_url("sqlite:///var/track.db")
    absolute = store_from_url(f"sqlite:///{tmp_path}/track.db")
    assert isinstance(relative, SqliteStore) and relative.path == "var/track.db"
    assert isinstance(absolute, SqliteStore) and absolute.path == f"{tmp_path}/track.db"
    for url in ("postgresql://mash@db/track", "postgres://db/track?search_path=mash"):
        chosen = store_from_url(url)
        assert isinstance(chosen, PostgresStore) and chosen.url == url
    for bad in ("mysql://db/track", "sqlite://track.db", "sqlite:///"):
        with pytest.raises(StoreError, match="unsupported store URL"):
            store_from_url(bad)


async def test_period_reads_take_what_falls_in_the_period(store: TrackingStore) -> None:
    inside, before = T0 + timedelta(hours=1), T0 - timedelta(seconds=1)
    await admit(store, record("in-period", created_at=inside), inside)
    await admit(store, record("too-early", created_at=before), before)
    await store.advance(
        [Transition("in-period", Event.REJECTED, reason="agreement: no agreement")], inside
    )
    await store.advance(
        [Transition("too-early", Event.REJECTED, reason="agreement: no agreement")], before
    )
    end = T0 + timedelta(days=1)
    assert [m.message_id for m in await store.messages_between(T0, end)] == ["in-period"]
    rejections = await store.rejections_between(T0, end)
    assert [(r.message_id, r.reason) for r in rejections] == [
        ("in-period", "agreement: no agreement")
    ]
    assert await store.messages_between(end, end + timedelta(days=1)) == []
