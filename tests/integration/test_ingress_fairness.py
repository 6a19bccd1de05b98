"""Per-agency ingress: one agency's flood fills only its own queue and delays only itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.broker.publisher import PublishNacked, publish
from gateway.broker.topology import INGRESS_ROUTING_KEY, Limits
from gateway.broker.vhost import BrokerAdmin
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from gateway.services.router import DEFAULT_PREFETCH
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
UPN = b'      <Identifier scheme="upn">B801200005001</Identifier>\n'
POLICE_REFERRAL = REFERRAL.replace(UPN, b"")  # a UPN travels only in education flows
FLOOD = Limits(ingress_max_length=150)


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path, limits=FLOOD) as running:
        yield running


async def test_a_flood_from_one_agency_does_not_hold_back_another(exchange: Exchange) -> None:
    await exchange.edge("hub")
    school = await exchange.edge("education", consume=False)
    police = await exchange.edge("police", consume=False)
    await exchange.stop_router()  # the backlog builds up while nothing is routed

    flood = [
        (await school.submit(Submission(REFERRAL, ("hub",)))).message_id
        for _ in range(FLOOD.ingress_max_length)
    ]
    full = r"exchange 'mash\.ingress\.education'.*nack.*the queue is full"
    with pytest.raises(PublishNacked, match=full):  # education's own queue is full...
        for extra in range(3):  # a quorum queue notices its bound one message late
            await publish(
                school.ingress, b"x", routing_key=INGRESS_ROUTING_KEY, message_id=f"x{extra}"
            )
    urgent = await police.submit(Submission(POLICE_REFERRAL, ("hub",)))  # ...police's is not

    await exchange.start_router()
    hub = exchange.inboxes["hub"]

    def order() -> list[str]:
        return [m.header.fields.message_id for m in hub.of_type("Referral")]

    async def arrived() -> bool:
        return urgent.message_id in order()

    await eventually(arrived, timeout=60)
    ahead = order().index(urgent.message_id)
    # Police's referral waits behind at most education's messages already in the
    # router's hands (a prefetch window, and the ones taken while it was routed),
    # never behind education's whole backlog.
    assert ahead <= 2 * DEFAULT_PREFETCH < len(flood), f"{ahead} flooded referrals went first"

    async def all_routed() -> bool:
        return len(order()) == len(flood) + 1

    await eventually(all_routed, timeout=120)  # the flood is delayed, not lost
