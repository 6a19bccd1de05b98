"""A connection the broker drops while the agency's system is taking a message.

Closing a channel cancels its consumer tasks (aiormq), so an edge whose
hand-over is cut there has given the message to the agency's system but not
yet recorded that it did. The message was not acked, so the broker delivers
it again once the edge has reconnected: the agency's system must not get it
a second time, and the sender must still get its receipt.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from gateway.broker.topology import inbox_queue
from gateway.core.resources import schemas_dir
from gateway.services.edge import Delivered, Submission
from tests.fault.conftest import FaultArea, run_rabbitmqctl
from tests.integration.exchange_harness import Inbox, open_edge

pytestmark = pytest.mark.fault

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
WAIT_S = 60.0


@dataclass
class SlowSystem(Inbox):
    """An agency system that takes a message, then is still writing its record for a while."""

    took: asyncio.Event = field(default_factory=asyncio.Event)
    finish: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, delivered: Delivered) -> None:
        self.messages.append(delivered)
        self.took.set()
        await self.finish.wait()


async def test_a_hand_over_cut_by_a_dropped_connection_is_not_repeated(
    area: FaultArea, rabbitmqctl: str
) -> None:
    hub = await area.edge("hub")
    police = SlowSystem()
    area.inboxes["police"] = police
    area.edges["police"] = await open_edge(area.config, "police", area.tmp, police)
    deadline = time.monotonic() + WAIT_S

    sent = await hub.submit(Submission(REQUEST, ("police",), correlation_id="CASE-CUT"))
    await asyncio.wait_for(police.took.wait(), WAIT_S)
    await run_rabbitmqctl(
        rabbitmqctl, "close_all_connections", "--vhost", area.vhost, "fault test: connection cut"
    )
    await asyncio.sleep(1.0)  # the edge sees its channel closed while its system is busy
    police.finish.set()

    def receipted() -> bool:
        receipts = area.inboxes["hub"].of_type("DeliveryReceipt")
        return any(r.header.fields.in_reply_to == sent.message_id for r in receipts)

    await area.wait_for("the request receipted after the reconnect", receipted, deadline)
    while (left := await messages_in(rabbitmqctl, area.vhost, inbox_queue("police"))) != 0:
        assert time.monotonic() < deadline, f"police's inbox still holds {left} message(s)"
        await asyncio.sleep(0.2)
    assert [m.header.fields.message_id for m in police.messages] == [sent.message_id]


async def messages_in(rabbitmqctl: str, vhost: str, queue: str) -> int:
    """Ready and unacknowledged messages in ``queue``: 0 once any redelivery is settled."""
    text = await run_rabbitmqctl(
        rabbitmqctl, "-q", "list_queues", "-p", vhost, "name", "messages", "--no-table-headers"
    )
    return sum(int(line.split()[1]) for line in text.splitlines() if line.split()[0] == queue)
