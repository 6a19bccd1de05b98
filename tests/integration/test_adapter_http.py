"""HTTP adapters on the real exchange: children's social care posts its case export, gets ids back.

Inbound: bearer tokens, media types, size limit, idempotency across
restarts, mapping and schema refusals with their reason, and the status of
each message. Outbound: the webhook gets each message once; the receipt
waits for a 2xx; a webhook that is down never yields a positive receipt
and the message ends in quarantine, never lost.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from aiohttp import web

from adapters import http_tokens
from adapters.profile import BUILTIN
from gateway.broker import topology
from gateway.broker.vhost import BrokerAdmin
from gateway.config.area_config import AreaConfig
from gateway.core.resources import schemas_dir
from gateway.intake.devkeys import self_signed_pair
from gateway.services.edge import Submission
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

EXPORT = (BUILTIN / "csc" / "samples" / "case-export-information-return.xml").read_bytes()
SEARCH = (BUILTIN / "probation" / "samples" / "search-result.json").read_bytes()
REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
RESPONSE = (schemas_dir() / "examples" / "valid" / "information-response.xml").read_bytes()
XML = {"Content-Type": "application/xml"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Webhook:
    """The agency system's end: records each POST (header names lower-cased); 503s first."""

    port: int = field(default_factory=free_port)
    failures: int = 0
    refuse: bool = False  # answer 422: the agency system will never take it
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.refuse:
            return web.Response(status=422)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=503)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append((headers, await request.read()))
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mash"


@dataclass
class Csc:
    config: AreaConfig
    url: str
    token: str
    webhook: Webhook

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def http_adapter(port: int, webhook: str, agency: str = "csc") -> str:
    return (
        f'[[adapters]]\nagency = "{agency}"\nprofile = "{agency}"\nrecipients = ["hub"]\n'
        f'transport = "http"\n[adapters.http]\nlisten = "127.0.0.1:{port}"\n'
        f'webhook = "{webhook}"\nmax_body_bytes = 65536\nattempts = 2\nbackoff_seconds = 0.01\n'
    )


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        await running.edge("hub")
        yield running


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/mash", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook.port).start()
    yield hook
    await runner.cleanup()


@pytest.fixture
async def csc(exchange: Exchange, webhook: Webhook, tmp_path: Path) -> AsyncIterator[Csc]:
    port = free_port()
    config = add_adapter(exchange, http_adapter(port, webhook.url))
    token = http_tokens.issue(config.private_keys_dir, "csc")
    async with running_adapter(config, "csc", tmp_path / "ledger.db", exchange.router_store):
        yield Csc(config, f"http://127.0.0.1:{port}", token, webhook)


async def post(
    csc: Csc, body: bytes, headers: dict[str, str], auth: bool = True
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{csc.url}/messages", data=body, headers={**(csc.auth() if auth else {}), **headers}
        ) as reply,
    ):
        return reply.status, await reply.json()


def of_type(exchange: Exchange, agency: str, message_type: str) -> list[bytes]:
    return [m.payload for m in exchange.inboxes[agency].of_type(message_type)]


async def _some(items: Sequence[object]) -> bool:
    return bool(items)


async def test_a_request_goes_to_the_webhook_and_the_case_export_answers_it(
    exchange: Exchange, csc: Csc
) -> None:
    hub = exchange.edges["hub"]
    request = await hub.submit(Submission(REQUEST, ("csc",), correlation_id="CASE-7"))
    await eventually(lambda: _some(csc.webhook.received))
    headers, body = csc.webhook.received[0]
    assert body == REQUEST
    assert headers["idempotency-key"] == headers["x-message-id"] == request.message_id
    assert (headers["x-message-type"], headers["x-correlation-id"]) == (
        "InformationRequest",
        "CASE-7",
    )
    await eventually(lambda: _some(of_type(exchange, "hub", "DeliveryReceipt")))

    status, answer = await post(
        csc,
        EXPORT,
        {**XML, "X-Correlation-Id": "CASE-7", "X-In-Reply-To": request.message_id},
    )
    assert status == 202, answer
    (message_id,) = answer["message_ids"]  # type: ignore[misc]
    await eventually(lambda: _some(of_type(exchange, "hub", "InformationResponse")))
    response = exchange.inboxes["hub"].of_type("InformationResponse")[0]
    assert response.header.fields.message_id == message_id
    assert response.header.fields.in_reply_to == request.message_id
    assert b"<ReleaseCondition>hub-only</ReleaseCondition>" in response.payload

    async def delivered() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{csc.url}/messages/{message_id}", headers=csc.auth()) as reply,
        ):
            found = await reply.json()
            return reply.status == 200 and found["state"] == "delivered"

    await eventually(delivered)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{csc.url}/messages/{request.message_id}", headers=csc.auth()) as reply,
    ):
        assert reply.status == 404  # the hub's message, not csc's


async def test_idempotency_key_survives_a_restart(
    exchange: Exchange, webhook: Webhook, tmp_path: Path
) -> None:
    port = free_port()
    config = add_adapter(exchange, http_adapter(port, webhook.url))
    token = http_tokens.issue(config.private_keys_dir, "csc")
    csc = Csc(config, f"http://127.0.0.1:{port}", token, webhook)
    key = {**XML, "Idempotency-Key": "csc-return-0042"}
    async with running_adapter(config, "csc", tmp_path / "ledger.db"):
        first = await post(csc, EXPORT, key)
        again = await post(csc, EXPORT, key)
        assert first[0] == 202 and again == (200, first[1])
    async with running_adapter(config, "csc", tmp_path / "ledger.db"):
        assert await post(csc, EXPORT, key) == (200, first[1])
        other = EXPORT.replace(b"Jo Rivers", b"Sam Rivers")
        status, problem = await post(csc, other, key)
        assert (status, problem["error"]) == (409, "idempotency-key-reused")
    await eventually(lambda: _some(of_type(exchange, "hub", "InformationResponse")))
    await asyncio.sleep(0.5)
    assert len(of_type(exchange, "hub", "InformationResponse")) == 1


async def test_bad_requests_get_a_4xx_with_the_reason(exchange: Exchange, csc: Csc) -> None:
    assert (await post(csc, EXPORT, XML, auth=False))[0] == 401
    status, problem = await post(csc, EXPORT, {**XML, **csc.auth("not-the-token")})
    assert (status, problem["error"]) == (401, "unauthorised")

    status, problem = await post(csc, EXPORT, {"Content-Type": "application/json"})
    assert status == 415
    assert "application/json is not accepted" in str(problem["reason"])

    status, problem = await post(csc, b"<x>" + b"a" * 70_000 + b"</x>", XML)
    assert (status, problem["error"]) == (413, "too-large")

    unmapped = EXPORT.replace(b"<Condition>HUB_ONLY</Condition>", b"<Condition>ANY</Condition>")
    status, problem = await post(csc, unmapped, XML)
    assert (status, problem["error"]) == (422, "mapping")
    assert str(problem["reason"]).startswith("body: line ")
    assert "CaseExport/Sharing/Condition: unknown condition ANY" in str(problem["reason"])

    bad_date = EXPORT.replace(b'date="2024-02-01"', b'date="01/02/2024"')
    status, problem = await post(csc, bad_date, XML)
    assert (status, problem["error"]) == (422, "schema")
    assert "Date" in str(problem["reason"])

    status, problem = await post(csc, EXPORT[:300], XML)
    assert (status, problem["error"]) == (422, "mapping")
    assert "not well-formed" in str(problem["reason"])

    canonical = {"Content-Type": "application/vnd.mash-gateway+xml"}
    status, answer = await post(csc, RESPONSE, canonical)
    assert status == 202, answer
    await eventually(lambda: _some(of_type(exchange, "hub", "InformationResponse")))
    assert len(of_type(exchange, "hub", "InformationResponse")) == 1


async def test_a_flaky_webhook_is_retried_and_receipted_after_its_2xx(
    exchange: Exchange, csc: Csc
) -> None:
    csc.webhook.failures = 1
    sent = await exchange.edges["hub"].submit(Submission(REQUEST, ("csc",)))
    await eventually(lambda: _some(of_type(exchange, "hub", "DeliveryReceipt")))
    assert csc.webhook.attempts == 2
    assert [h["x-message-id"] for h, _ in csc.webhook.received] == [sent.message_id]
    receipt = exchange.inboxes["hub"].of_type("DeliveryReceipt")[0]
    assert receipt.header.fields.receipt_outcome == "positive"


async def test_a_webhook_that_is_down_gets_a_negative_receipt_and_ends_in_quarantine(
    exchange: Exchange, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/mash"  # nothing listens there
    config = add_adapter(exchange, http_adapter(free_port(), down))
    http_tokens.issue(config.private_keys_dir, "csc")
    async with running_adapter(config, "csc", tmp_path / "ledger.db"):
        sent = await exchange.edges["hub"].submit(Submission(REQUEST, ("csc",)))
        held = await _quarantined(exchange, sent.message_id)
        await eventually(lambda: _some(of_type(exchange, "hub", "DeliveryReceipt")))
    assert held.headers["x-death"][0]["reason"] == "rejected"  # type: ignore[index]
    (receipt,) = exchange.inboxes["hub"].of_type("DeliveryReceipt")
    assert (receipt.header.fields.receipt_outcome, receipt.header.fields.receipt_check) == (
        "negative",
        "handler",
    )
    assert b"webhook did not take message" in receipt.payload


async def test_probation_posts_json_and_the_hub_gets_a_response(
    exchange: Exchange, webhook: Webhook, tmp_path: Path
) -> None:
    port = free_port()
    config = add_adapter(exchange, http_adapter(port, webhook.url, "probation"))
    probation = Csc(
        config,
        f"http://127.0.0.1:{port}",
        http_tokens.issue(config.private_keys_dir, "probation"),
        webhook,
    )
    json_type = {"Content-Type": "application/json"}
    async with running_adapter(config, "probation", tmp_path / "ledger.db"):
        status, problem = await post(
            probation,
            SEARCH.replace(b'"HIGH"', b'"EXTREME"').replace(b'"DOMESTIC_ABUSE"', b'"ARSON"'),
            json_type,
        )
        assert (status, problem["reason"]) == (
            422,
            "body: $.risks[0].category: category: unknown category ARSON",
        )
        status, problem = await post(probation, b'{"officer": ', json_type)
        assert (status, problem["error"]) == (422, "mapping")
        status, answer = await post(probation, SEARCH, json_type)
        assert status == 202, answer
        await eventually(lambda: _some(of_type(exchange, "hub", "InformationResponse")))
    (response,) = exchange.inboxes["hub"].of_type("InformationResponse")
    assert response.header.fields.sender == "probation"
    assert b'<RiskIndicator level="high" concern="3A" subject="m2">' in response.payload


async def test_a_message_the_webhook_refuses_gets_a_negative_receipt_and_quarantine(
    exchange: Exchange, csc: Csc
) -> None:
    csc.webhook.refuse = True
    sent = await exchange.edges["hub"].submit(Submission(REQUEST, ("csc",)))
    held = await _quarantined(exchange, sent.message_id)
    await eventually(lambda: _some(of_type(exchange, "hub", "DeliveryReceipt")))
    assert held.headers["x-death"][0]["reason"] == "rejected"  # type: ignore[index]
    assert csc.webhook.attempts == 1  # a 4xx is final: no retry, no redelivery
    (receipt,) = exchange.inboxes["hub"].of_type("DeliveryReceipt")
    assert (receipt.header.fields.receipt_outcome, receipt.header.fields.receipt_check) == (
        "negative",
        "handler",
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as an area's TLS pair would be."""
    certificate, key = self_signed_pair("127.0.0.1", datetime.now(UTC), timedelta(days=1))
    cert, key_file = folder / "http.crt", folder / "http.key"
    cert.write_bytes(certificate)
    key_file.write_bytes(key)
    return cert, key_file


async def test_the_endpoint_serves_tls_when_given_a_pair(
    exchange: Exchange, webhook: Webhook, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    toml = http_adapter(port, webhook.url).replace(
        "[adapters.http]\n", f'[adapters.http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    config = add_adapter(exchange, toml)
    token = http_tokens.issue(config.private_keys_dir, "csc")
    headers = {"Authorization": f"Bearer {token}", **XML}
    trusted = ssl.create_default_context(cafile=str(cert))
    async with (
        running_adapter(config, "csc", tmp_path / "ledger.db"),
        aiohttp.ClientSession() as session,
    ):
        url = f"https://127.0.0.1:{port}/messages"
        async with session.post(url, data=EXPORT, headers=headers, ssl=trusted) as reply:
            assert reply.status == 202
        with pytest.raises(aiohttp.ClientError):
            await session.post(f"http://127.0.0.1:{port}/messages", data=EXPORT, headers=headers)


async def _quarantined(exchange: Exchange, message_id: str) -> aio_pika.abc.AbstractMessage:
    connection = await aio_pika.connect(exchange.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.QUARANTINE_QUEUE, ensure=False)
        found: list[aio_pika.abc.AbstractMessage] = []

        async def arrived() -> bool:
            message = await queue.get(fail=False, no_ack=True)
            if message is not None and message.message_id == message_id:
                found.append(message)
            return bool(found)

        await eventually(arrived, timeout=20)
        return found[0]
