"""The escalation ladder on a real exchange: a silent partner, a late answer, a router restart.

The area runs a shortened clock (an Amber answer due in 3 s, level 2 after
a 2 s grace, both around the clock) so the ladder climbs in seconds; the
escalator ticks at its real 1 s interval, so "within 5 s of the deadline"
is measured here, not assumed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import aio_pika
import pytest

from gateway.broker import topology
from gateway.broker.vhost import BrokerAdmin
from gateway.core import deadlines as dl
from gateway.core.deadline_rules import Deadline, Kind
from gateway.core.records import DeadlineEvent
from gateway.core.resources import schemas_dir
from gateway.core.schemas import NAMESPACE
from gateway.core.xmlsafe import parse
from gateway.infra.clock import utc_now
from gateway.services.edge import Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

EXAMPLES = schemas_dir() / "examples" / "valid"
REQUEST = (EXAMPLES / "information-request.xml").read_bytes()  # rated Amber
RESPONSE = (EXAMPLES / "information-response.xml").read_bytes()
CLOCK = dl.Counting.CLOCK
SHORT = replace(
    dl.default_policy(),
    response={**dl.DEFAULT_RESPONSE, "Amber": dl.Timer(dl.Duration(seconds=3), CLOCK)},
    grace=dl.Timer(dl.Duration(seconds=2), CLOCK),
)
FIRING_LAG_S = 5.0


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path, policy=SHORT) as running:
        yield running


def escalations(exchange: Exchange, agency: str) -> list[tuple[int, str]]:
    """(level, silent agency) of each Escalation the agency's system received."""
    found = []
    for delivered in exchange.inboxes[agency].of_type("Escalation"):
        root = parse(delivered.payload, "escalation")
        found.append(
            (
                int(root.findtext(f"{{{NAMESPACE}}}Level") or 0),
                root.findtext(f"{{{NAMESPACE}}}SilentAgency") or "",
            )
        )
    return found


async def response_deadline(exchange: Exchange, case: str, debtor: str) -> Deadline:
    return next(
        d
        for d in await exchange.router_store.case_deadlines(case)
        if d.kind is Kind.RESPONSE and d.debtor == debtor
    )


async def received_at(exchange: Exchange, agency: str, level: int) -> datetime:
    await eventually(lambda: _has_level(exchange, agency, level), timeout=15)
    return utc_now()


async def _has_level(exchange: Exchange, agency: str, level: int) -> bool:
    return any(found == level for found, _ in escalations(exchange, agency))


async def test_a_silent_partner_climbs_the_ladder_once_and_a_late_answer_records_the_breach(
    exchange: Exchange,
) -> None:
    async with _events(exchange) as events:
        await _silent_partner(exchange, events)


async def _silent_partner(exchange: Exchange, events: aio_pika.abc.AbstractQueue) -> None:
    hub, health = await exchange.edge("hub"), await exchange.edge("health")
    request = await hub.submit(Submission(REQUEST, ("health",), correlation_id="CASE-SILENT"))

    level_one_at = await received_at(exchange, "health", 1)
    deadline = await response_deadline(exchange, "CASE-SILENT", "health")
    assert (level_one_at - deadline.due_at).total_seconds() < FIRING_LAG_S
    await eventually(lambda: _has_level(exchange, "hub", 1))  # the sender is told too

    level_two_at = await received_at(exchange, "hub", 2)
    level_two_due = deadline.due_at + SHORT.grace.duration.length(CLOCK, SHORT.calendar)
    assert (level_two_at - level_two_due).total_seconds() < FIRING_LAG_S
    assert escalations(exchange, "hub") == [(1, "health"), (2, "health")]
    assert escalations(exchange, "health") == [(1, "health")]  # level 2 is for the hub manager

    await health.submit(
        Submission(RESPONSE, ("hub",), correlation_id="CASE-SILENT", in_reply_to=request.message_id)
    )
    await eventually(lambda: _closed(exchange, "CASE-SILENT", "health"))
    closed = await response_deadline(exchange, "CASE-SILENT", "health")
    assert closed.breached and closed.level == 2 and closed.next_at is None
    history = [
        (e.event, e.level)
        for e in await exchange.router_store.case_deadline_events("CASE-SILENT")
        if e.deadline_id == closed.deadline_id
    ]
    assert history == [
        (DeadlineEvent.ESCALATED, 1),
        (DeadlineEvent.ESCALATED, 2),
        (DeadlineEvent.MET_LATE, None),
    ]
    # The escalations are in the case's track, and on the events exchange.
    case = await exchange.router_store.case_messages("CASE-SILENT")
    assert sum(m.message_type == "Escalation" for m in case) == 2
    published = await _drain(events)
    assert sorted((e["level"], e["silent_agency"]) for e in published) == [
        (1, "health"),
        (2, "health"),
    ]
    await asyncio.sleep(2.5)  # a few more ticks: nothing fires twice
    assert escalations(exchange, "hub") == [(1, "health"), (2, "health")]


async def test_an_answer_in_time_escalates_nothing(exchange: Exchange) -> None:
    hub, police = await exchange.edge("hub"), await exchange.edge("police")
    request = await hub.submit(Submission(REQUEST, ("police",), correlation_id="CASE-PROMPT"))
    await eventually(lambda: _has(exchange, "police", "InformationRequest"))
    await police.submit(
        Submission(RESPONSE, ("hub",), correlation_id="CASE-PROMPT", in_reply_to=request.message_id)
    )
    await eventually(lambda: _closed(exchange, "CASE-PROMPT", "police"))
    await asyncio.sleep(SHORT.response["Amber"].duration.seconds + 2)
    assert escalations(exchange, "hub") == [] and escalations(exchange, "police") == []
    deadline = await response_deadline(exchange, "CASE-PROMPT", "police")
    assert not deadline.breached


async def test_a_deadline_that_passes_while_the_router_is_down_fires_at_start_up(
    exchange: Exchange,
) -> None:
    hub, _ = await exchange.edge("hub"), await exchange.edge("csc")
    await hub.submit(Submission(REQUEST, ("csc",), correlation_id="CASE-DOWN"))
    await eventually(lambda: _has(exchange, "csc", "InformationRequest"))
    await exchange.stop_router()
    deadline = await response_deadline(exchange, "CASE-DOWN", "csc")
    await asyncio.sleep(max(0.0, (deadline.due_at - utc_now()).total_seconds()) + 1)
    assert escalations(exchange, "csc") == []  # nothing fires while no router runs
    await exchange.start_router(policy=SHORT)
    started = utc_now()
    fired = await received_at(exchange, "csc", 1)
    assert (fired - started).total_seconds() < FIRING_LAG_S
    await received_at(exchange, "hub", 2)
    await asyncio.sleep(1.5)
    assert escalations(exchange, "csc") == [(1, "csc")]
    assert escalations(exchange, "hub") == [(1, "csc"), (2, "csc")]


async def _has(exchange: Exchange, agency: str, message_type: str) -> bool:
    return bool(exchange.inboxes[agency].of_type(message_type))


async def _closed(exchange: Exchange, case: str, debtor: str) -> bool:
    return not (await response_deadline(exchange, case, debtor)).is_open


@asynccontextmanager
async def _events(exchange: Exchange) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A private queue bound to every escalation event."""
    async with await aio_pika.connect(exchange.amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(topology.EVENTS_EXCHANGE, routing_key="deadline.escalated.#")
        yield queue


async def _drain(queue: aio_pika.abc.AbstractQueue) -> list[dict[str, object]]:
    found = []
    while (message := await queue.get(fail=False)) is not None:
        await message.ack()
        found.append(json.loads(message.body))
    return found
