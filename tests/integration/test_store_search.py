"""Message search on SQLite and PostgreSQL: each filter; keyset pages never skip or repeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.lifecycle import Event, State
from gateway.core.message_search import MessageQuery, page_of, read_cursor
from gateway.core.records import MessageRecord, Transition
from gateway.store import TrackingStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def record(n: int, **changes: object) -> MessageRecord:
    facts: dict[str, object] = {
        "message_id": f"m-{n:03d}",
        "correlation_id": f"case-{n % 3}",
        "in_reply_to": None,
        "message_type": "InformationRequest" if n % 2 else "Referral",
        "sender": "hub" if n % 2 else "police",
        "recipients": ("health", "csc") if n % 2 else ("hub",),
        "rag": None,
        "deadline": None,
        "created_at": T0 + timedelta(minutes=n // 2),  # pairs share a time: ids break ties
    }
    return MessageRecord(**{**facts, **changes})  # type: ignore[arg-type]


async def filled(store: TrackingStore, count: int = 25) -> list[MessageRecord]:
    made = [record(n) for n in range(count)]
    for message in made:
        await store.admit(message, f"digest-{message.message_id}", message.created_at)
    await store.advance([Transition("m-004", Event.ROUTED)], T0 + timedelta(hours=1))
    return made


def newest_first(messages: list[MessageRecord]) -> list[str]:
    return [
        m.message_id
        for m in sorted(messages, key=lambda m: (m.created_at, m.message_id), reverse=True)
    ]


async def test_pages_walk_every_match_once_newest_first(store: TrackingStore) -> None:
    made = await filled(store)
    seen: list[str] = []
    query = MessageQuery(limit=4)
    while True:
        page = page_of(await store.search_messages(query), query.limit)
        seen += [m.message_id for m in page.messages]
        if page.next is None:
            break
        query = MessageQuery(limit=4, after=read_cursor(page.next))
    assert seen == newest_first(made)


async def test_each_filter_selects_what_it_names(store: TrackingStore) -> None:
    made = await filled(store)

    async def ids(**given: object) -> list[str]:
        return [m.message_id for m in await store.search_messages(MessageQuery(limit=100, **given))]  # type: ignore[arg-type]

    assert await ids(correlation_id="case-1") == newest_first(
        [m for m in made if m.correlation_id == "case-1"]
    )
    assert await ids(agency="police") == newest_first([m for m in made if m.sender == "police"])
    assert await ids(agency="health") == newest_first([m for m in made if "health" in m.recipients])
    assert await ids(message_type="Referral", agency="hub") == newest_first(
        [m for m in made if m.message_type == "Referral"]
    )
    assert await ids(state=State.ROUTED) == ["m-004"]
    start, end = T0 + timedelta(minutes=3), T0 + timedelta(minutes=5)
    assert await ids(start=start, end=end) == newest_first(
        [m for m in made if start <= m.created_at < end]
    )
    assert await ids(agency="nobody") == []
    with_records = await store.search_messages(MessageQuery(correlation_id="case-1", limit=1))
    assert len(with_records) == 2  # one more than the limit: the page knows another follows
    assert with_records[0].recipients in (("health", "csc"), ("hub",))
