"""``kill -9`` of the router in mid-stream, then a restart: nothing lost, nothing handed over twice.

The router acks a message only after routing it and recording that, so a
crash leaves its unacked messages in its ingress queues for the restarted
router; messages it had already published to an inbox are published again,
and the receiving edge must absorb those repeats by message id. The router
is killed three times, because where a kill lands in its per-message work is
chance; the window that yields a repeat (published, not yet acked) is narrow.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from tests.fault.conftest import FaultArea

pytestmark = pytest.mark.fault

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
TOTAL = 2_000
KILL_POINTS = (300, 900, 1500)  # requests the police system has received at each kill
BATCH = 50
WAIT_S = 120.0


async def submit_all(area: FaultArea, total: int) -> list[str]:
    """Submit ``total`` requests hub → police, each in its own case; returns their message ids."""
    hub = area.edges["hub"]
    ids: list[str] = []
    for start in range(0, total, BATCH):
        sent = await asyncio.gather(
            *(
                hub.submit(Submission(REQUEST, ("police",), correlation_id=f"CASE-{n}"))
                for n in range(start, min(start + BATCH, total))
            )
        )
        ids.extend(fields.message_id for fields in sent)
    return ids


async def test_router_killed_mid_stream_loses_nothing_and_repeats_nothing(
    area: FaultArea,
) -> None:
    await area.edge("hub")
    await area.edge("police")
    police, hub = area.inboxes["police"], area.inboxes["hub"]
    deadline = time.monotonic() + WAIT_S
    submitting = asyncio.create_task(submit_all(area, TOTAL))

    for point in KILL_POINTS:
        await area.wait_for(f"kill point {point}", area.received("police", point), deadline)
        assert area.router.kill() == -signal.SIGKILL
        seen_at_kill = len(police.messages)
        delivered_at_kill = area.router_states("InformationRequest")[State.DELIVERED.value]
        await area.router.start()
    submitted = await submitting

    def all_receipted() -> bool:
        return (
            len({m.header.fields.in_reply_to for m in hub.of_type("DeliveryReceipt")}) >= TOTAL
            and area.router_states("InformationRequest")[State.DELIVERED.value] >= TOTAL
        )

    await area.wait_for("every request delivered and receipted", all_receipted, deadline)

    assert seen_at_kill < TOTAL and delivered_at_kill < TOTAL, "the last kill came too late to test"
    handed_over = Counter(m.header.fields.message_id for m in police.messages)
    assert [i for i, n in handed_over.items() if n > 1] == []
    assert set(handed_over) == set(submitted) and len(submitted) == TOTAL
    assert area.router_states("InformationRequest") == {State.DELIVERED.value: TOTAL}
    receipts = hub.of_type("DeliveryReceipt")
    assert {m.header.fields.in_reply_to for m in receipts} == set(submitted)
    assert {m.header.fields.receipt_outcome for m in receipts} == {"positive"}
