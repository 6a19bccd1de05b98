"""Who may answer what, over the real broker: only a recipient of a message may reply to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.broker.vhost import BrokerAdmin
from gateway.core.deadline_rules import Kind
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

EXAMPLES = schemas_dir() / "examples" / "valid"
REQUEST = (EXAMPLES / "information-request.xml").read_bytes()
RESPONSE = (EXAMPLES / "information-response.xml").read_bytes()


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


async def test_an_agency_never_asked_cannot_answer_and_the_asked_one_still_owes(
    exchange: Exchange,
) -> None:
    hub, csc = await exchange.edge("hub"), await exchange.edge("csc")
    education = await exchange.edge("education")
    request = await hub.submit(Submission(REQUEST, ("csc",), correlation_id="CASE-ASK"))
    store = exchange.router_store

    async def receipted() -> bool:
        record = await store.message(request.message_id)
        return record is not None and record.state is State.DELIVERED

    await eventually(receipted)
    forged = await education.submit(
        Submission(RESPONSE, ("hub",), correlation_id="CASE-ASK", in_reply_to=request.message_id)
    )

    async def told() -> bool:
        return bool(exchange.inboxes["education"].of_type("NonDelivery"))

    await eventually(told)
    (notice,) = exchange.inboxes["education"].of_type("NonDelivery")
    assert b"<FailedCheck>reply</FailedCheck>" in notice.payload
    assert b"education replied to" in notice.payload and b"was not its recipient" in notice.payload
    refused = await store.message(forged.message_id)
    assert refused is not None and refused.state is State.REJECTED
    assert exchange.inboxes["hub"].of_type("InformationResponse") == []
    original = await store.message(request.message_id)
    assert original is not None and original.state is State.DELIVERED  # not answered
    owed = [
        d
        for d in await store.case_deadlines("CASE-ASK")
        if d.kind is Kind.RESPONSE and d.message_id == request.message_id
    ]
    assert [(d.debtor, d.is_open) for d in owed] == [("csc", True)]

    answer = await csc.submit(
        Submission(RESPONSE, ("hub",), correlation_id="CASE-ASK", in_reply_to=request.message_id)
    )

    async def answered() -> bool:
        record = await store.message(request.message_id)
        return record is not None and record.state is State.ANSWERED

    await eventually(answered)

    async def arrived() -> bool:
        return bool(exchange.inboxes["hub"].of_type("InformationResponse"))

    await eventually(arrived)
    assert [
        m.header.fields.message_id for m in exchange.inboxes["hub"].of_type("InformationResponse")
    ] == [answer.message_id]
