"""A RabbitMQ restart in mid-run loses nothing, and every consumer comes back by itself.

The broker is restarted while the router process and the edges are busy:
every connection drops, publishes in flight fail, unacked deliveries go back
to their quorum queues. Nothing in the gateway is restarted or told; the
router and the edges must reconnect and consume again on their own.

The test client stands in for an agency system that submits one request per
case and never retries: ``Edge.submit`` itself republishes the same sealed
bytes until the broker confirms them, so a publish caught by the outage is
neither lost nor doubled: every case arrives exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Edge, Submission
from tests.fault.conftest import (
    EXPECTED_CONSUMERS,
    FaultArea,
    broker_stopped,
    list_consumers,
    run_rabbitmqctl,
)

pytestmark = pytest.mark.fault

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
TOTAL = 500
RESTART_AFTER = 100  # requests the police system has received when the broker stops
OUTAGE_S = 3.0
PACE_S = 0.01  # about 70 submissions a second: the submitter is still busy when the broker stops
WAIT_S = 120.0
RECONSUME_S = 20.0


@dataclass
class Submitter:
    """Submits one request per case, at a steady pace; a failure fails the test."""

    edge: Edge
    sent: dict[str, str] = field(default_factory=dict)  # case -> message id

    async def submit_paced(self, cases: list[str]) -> None:
        for case in cases:
            fields = await self.edge.submit(Submission(REQUEST, ("police",), correlation_id=case))
            self.sent[case] = fields.message_id
            await asyncio.sleep(PACE_S)


async def consumers_return(rabbitmqctl: str, vhost: str) -> None:
    """The router and both edges consume again, by themselves, once the broker is back."""
    deadline = time.monotonic() + RECONSUME_S
    while (found := await list_consumers(rabbitmqctl, vhost)) != EXPECTED_CONSUMERS:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{RECONSUME_S}s after the broker restart the consumers are {found}, "
                f"not {EXPECTED_CONSUMERS}: a consumer did not come back"
            )
        await asyncio.sleep(0.5)


async def test_broker_restart_mid_run_loses_nothing(area: FaultArea, rabbitmqctl: str) -> None:
    submitter = Submitter(await area.edge("hub"))
    await area.edge("police")
    police, hub = area.inboxes["police"], area.inboxes["hub"]
    cases = [f"CASE-{n}" for n in range(TOTAL)]
    deadline = time.monotonic() + WAIT_S
    submitting = asyncio.create_task(submitter.submit_paced(cases))

    await area.wait_for("the restart point", area.received("police", RESTART_AFTER), deadline)
    async with broker_stopped(rabbitmqctl):
        await asyncio.sleep(OUTAGE_S)
    sent_before_back = len(submitter.sent)
    await consumers_return(rabbitmqctl, area.vhost)
    await submitting

    def police_has(message_ids: set[str]) -> bool:
        return message_ids <= {m.header.fields.message_id for m in police.messages}

    def all_receipted() -> bool:
        handed = {m.header.fields.message_id for m in police.messages}
        receipted = {m.header.fields.in_reply_to for m in hub.of_type("DeliveryReceipt")}
        return (
            police_has(set(submitter.sent.values()))
            and receipted >= handed
            and area.router_states("InformationRequest")[State.DELIVERED.value] >= len(handed)
        )

    try:
        await area.wait_for("every case delivered and receipted", all_receipted, deadline)
    except AssertionError as exc:  # where the missing ones wait: ready, or held unacked
        queues = await run_rabbitmqctl(
            *(rabbitmqctl, "-q", "list_queues", "-p", area.vhost, "name"),
            *("messages_ready", "messages_unacknowledged", "consumers"),
        )
        handed = {m.header.fields.message_id for m in police.messages}
        receipted = {m.header.fields.in_reply_to for m in hub.of_type("DeliveryReceipt")}
        raise AssertionError(
            f"not receipted at the hub: {sorted(handed - receipted)}\nqueues:\n{queues}\n{exc}"
        ) from None

    assert area.router.alive(), "the router died in the outage"
    assert sent_before_back < TOTAL, "every case was sent before the restart"
    handed_over = Counter(m.header.fields.message_id for m in police.messages)
    assert [i for i, n in handed_over.items() if n > 1] == []
    assert sorted(m.header.fields.correlation_id for m in police.messages) == sorted(cases)
    assert set(handed_over) == set(submitter.sent.values())
    assert area.router_states("InformationRequest") == {State.DELIVERED.value: len(handed_over)}
    receipts = hub.of_type("DeliveryReceipt")
    assert {m.header.fields.in_reply_to for m in receipts} == set(handed_over)
    assert {m.header.fields.receipt_outcome for m in receipts} == {"positive"}
    assert await list_consumers(rabbitmqctl, area.vhost) == EXPECTED_CONSUMERS
