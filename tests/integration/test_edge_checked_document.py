"""Edge.submit with a payload checked before it (the e-mail intake's), on the real exchange.

The schema check is not repeated, every other check of the sending edge
still runs, and the hub receives exactly the bytes that were checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.broker.vhost import BrokerAdmin
from gateway.core import schemas
from gateway.core.payload_facts import HeaderPayloadMismatch
from gateway.core.resources import schemas_dir
from gateway.core.schemas import SchemaViolation
from gateway.services.edge import PolicyRefusal, Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

UPN = b'<Identifier scheme="upn">B801200005001</Identifier>'
SCHOOL_REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
REFERRAL = SCHOOL_REFERRAL.replace(UPN, b"")  # police may not pass on the child's UPN


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    async with running_exchange(
        broker_admin, AMQP_URL, tmp_path_factory.mktemp("checked")
    ) as running:
        await running.edge("hub")
        await running.edge("police")
        yield running


async def test_a_checked_document_reaches_the_hub_as_its_exact_bytes_checked_once(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = schemas.checked(REFERRAL, "mail")

    def no_second_check(*_: object) -> None:
        raise AssertionError("the sending edge checked a CheckedDocument again")

    with monkeypatch.context() as patched:
        patched.setattr(schemas, "validate", no_second_check)
        fields = await exchange.edges["police"].submit(Submission(document, ("hub",)))
    assert fields.message_type == "Referral"
    assert fields.purpose == "child-safeguarding"  # the payload facts were read from the root

    def received() -> list[bytes]:
        hub = exchange.inboxes["hub"].messages
        return [m.payload for m in hub if m.header.fields.message_id == fields.message_id]

    async def delivered() -> bool:
        return bool(received())

    await eventually(delivered)
    assert received() == [REFERRAL]


async def test_a_checked_document_still_meets_the_upn_policy(exchange: Exchange) -> None:
    document = schemas.checked(SCHOOL_REFERRAL, "mail")
    with pytest.raises(PolicyRefusal, match="a UPN may travel only in education flows"):
        await exchange.edges["police"].submit(Submission(document, ("hub",)))


async def test_a_checked_document_still_meets_the_payload_facts(exchange: Exchange) -> None:
    document = schemas.checked(REFERRAL, "mail")
    with pytest.raises(HeaderPayloadMismatch, match="lawful bases cda-1998-s115 differ"):
        await exchange.edges["police"].submit(
            Submission(document, ("hub",), lawful_bases=("cda-1998-s115",))
        )


async def test_raw_bytes_are_still_checked(exchange: Exchange) -> None:
    bad = REFERRAL.replace(b"<Purpose>", b"<Purpose>x", 1)
    with pytest.raises(SchemaViolation):
        await exchange.edges["police"].submit(Submission(bad, ("hub",)))
