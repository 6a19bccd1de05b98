"""The console's reads of the store, on SQLite and PostgreSQL alike: flows, deadlines by page."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.deadline_rules import Deadline, Kind
from gateway.core.records import FlowCount
from gateway.store import TrackingStore
from tests.integration.test_store_deadlines import CASE, T0, request, route, routed

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(hours=6)


def responses(deadlines: list[Deadline]) -> list[tuple[str, str]]:
    return [(d.message_id, d.debtor) for d in deadlines if d.kind is Kind.RESPONSE]


async def a_day_of_requests(store: TrackingStore) -> None:
    """Red requests (4 h): two overdue at NOW, one answered late, one not yet due."""
    await route(store, request("req-1", recipients=("health", "police")))
    await route(store, request("req-2", recipients=("health",)), T0 + timedelta(hours=1))
    await route(store, request("req-3", recipients=("police",)), T0 + timedelta(hours=5))
    late = routed("resp-h", CASE, "InformationResponse", "health", ("hub",), in_reply_to="req-1")
    await route(store, late, T0 + timedelta(hours=5))


async def test_overdue_deadlines_page_by_keyset_most_overdue_first(store: TrackingStore) -> None:
    await a_day_of_requests(store)
    whole = await store.overdue_page(NOW, 100)
    assert responses(whole) == [("req-1", "police"), ("req-2", "health")]
    paged: list[Deadline] = []
    after = None
    while page := await store.overdue_page(NOW, 1, after):
        paged += page
        after = (page[-1].due_at, page[-1].deadline_id)
    assert [d.deadline_id for d in paged] == [d.deadline_id for d in whole]  # none twice, none lost
    assert responses(await store.coming_due(NOW, 10)) == [("req-3", "police")]


async def test_breached_and_counted_deadlines_cover_only_the_recent_ones(
    store: TrackingStore,
) -> None:
    await a_day_of_requests(store)
    assert responses(await store.breached_since(T0, 10)) == [("req-1", "health")]
    assert responses(await store.breached_since(NOW, 10)) == []
    counts = {
        (c.agency, c.kind): (c.open, c.overdue, c.breached)
        for c in await store.recent_deadline_counts(NOW, T0)
    }
    assert counts[("health", "response")] == (1, 1, 2)  # req-2 open and overdue; req-1 met late
    assert counts[("police", "response")] == (2, 1, 1)  # req-1 overdue, req-3 in time
    later = {(c.agency, c.kind): c.breached for c in await store.recent_deadline_counts(NOW, NOW)}
    assert later[("health", "response")] == 1  # the late answer is older than ``since``


async def test_flows_count_a_periods_messages_by_sender_and_type(store: TrackingStore) -> None:
    await a_day_of_requests(store)
    flows = await store.flow_counts(T0, T0 + timedelta(days=1))
    assert FlowCount("hub", "InformationRequest", 3, 0) in flows
    assert FlowCount("health", "InformationResponse", 1, 0) in flows
    assert await store.flow_counts(T0 + timedelta(days=1), T0 + timedelta(days=2)) == []
