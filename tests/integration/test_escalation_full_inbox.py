"""An escalation whose copy a full inbox refuses still reaches its other recipients, and
holds back no other agency's escalations.

Before: the refused copy failed the whole batch, which stayed due and was
claimed first again every tick, so one agency's full inbox (its system down
for a weekend) stopped every escalation in the area.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.broker import topology
from gateway.broker.vhost import BrokerAdmin
from gateway.core import deadlines as dl
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.test_escalation import escalations
from tests.integration.test_whole_rejection import fill

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
SMALL = topology.Limits(inbox_max_length=5)
# A receipt owed within 4 s: long enough to fill probation's inbox after its request is in.
QUICK_DELIVERY = replace(
    dl.default_policy(), delivery=dl.Timer(dl.Duration(seconds=4), dl.Counting.CLOCK)
)


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(
        broker_admin, AMQP_URL, tmp_path, policy=QUICK_DELIVERY, limits=SMALL
    ) as running:
        yield running


async def test_a_full_inbox_refuses_its_copy_and_the_other_escalations_still_go(
    exchange: Exchange,
) -> None:
    hub = await exchange.edge("hub")
    with capture_logs() as logs:
        # Probation's system is down: its request waits, then its inbox fills up.
        to_probation = await hub.submit(
            Submission(REQUEST, ("probation",), correlation_id="CASE-FULL")
        )
        await eventually(lambda: _routed(exchange, to_probation.message_id))
        await fill(exchange, "probation")
        # Health's system is down too, but its inbox has room.
        await hub.submit(Submission(REQUEST, ("health",), correlation_id="CASE-ROOM"))

        # Both escalations fire and are recorded, probation's refused copy notwithstanding.
        await eventually(lambda: _fired(exchange, "CASE-FULL"), timeout=20)
        await eventually(lambda: _fired(exchange, "CASE-ROOM"), timeout=10)
        assert not [e for e in logs if e["event"] == "escalator.tick_failed"]
        assert {silent for _, silent in escalations(exchange, "hub")} == {"probation", "health"}

    await exchange.edge("health")  # its system comes back: the escalation waited for it
    await eventually(lambda: _holds_escalation(exchange, "health"), timeout=10)
    refused = [e for e in logs if e["event"] == "escalation.copy_refused"]
    assert refused and {e["agency"] for e in refused} == {"probation"}
    assert "the inbox of probation is missing or full" in refused[0]["reason"]


async def _routed(exchange: Exchange, message_id: str) -> bool:
    record = await exchange.router_store.message(message_id)
    return record is not None and record.state is State.ROUTED


async def _fired(exchange: Exchange, case: str) -> bool:
    """The case's delivery deadline has its level-1 escalation recorded."""
    return any(d.level >= 1 for d in await exchange.router_store.case_deadlines(case))


async def _holds_escalation(exchange: Exchange, agency: str) -> bool:
    return bool(exchange.inboxes[agency].of_type("Escalation"))
