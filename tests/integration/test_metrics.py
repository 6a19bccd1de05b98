"""/metrics of a running router, scraped over real HTTP and checked by promtool.

The metrics registry is the process's own, so counters carry over from other
tests in the same run: every assertion compares a scrape before with one after.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.broker.vhost import BrokerAdmin
from gateway.config.metrics_config import Listen
from gateway.core.resources import schemas_dir
from gateway.services import queue_depths
from gateway.services.edge import Submission
from gateway.services.metrics_server import serving
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

EXAMPLES = schemas_dir() / "examples" / "valid"
REQUEST = (EXAMPLES / "information-request.xml").read_bytes()
REFERRAL = (EXAMPLES / "referral.xml").read_bytes()
ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


def _has(exchange: Exchange, agency: str, message_type: str) -> bool:
    return bool(exchange.inboxes[agency].of_type(message_type))


async def test_router_metrics_count_the_flow_and_pass_promtool(exchange: Exchange) -> None:
    config = exchange.config
    async with (
        serving(Listen("127.0.0.1", 0)) as port,
        queue_depths.watching(exchange.amqp_url, config.inbox_agencies, interval=0.1),
    ):
        assert port is not None
        before = parse(await scrape(port))
        hub, police = await exchange.edge("hub"), await exchange.edge("police")
        await exchange.edge("education")
        request = await hub.submit(Submission(REQUEST, ("police",), correlation_id="CASE-M1"))
        refused = await police.submit(Submission(REFERRAL, ("education",)))
        await eventually(lambda: _has_async(exchange, "hub", "DeliveryReceipt"))
        await eventually(lambda: _has_async(exchange, "police", "NonDelivery"))

        async def quarantine_seen() -> bool:
            polled = parse(await scrape(port))
            return value(polled, "mash_gateway_quarantine_messages") >= 1

        await eventually(quarantine_seen)
        text = await scrape(port)

    after = parse(text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    flow = {"message_type": "InformationRequest", "sender": "hub", "recipient": "police"}
    assert delta("mash_gateway_messages_total", **flow, outcome="submitted") == 1
    assert delta("mash_gateway_messages_total", **flow, outcome="routed") == 1
    assert delta("mash_gateway_messages_total", **flow, outcome="delivered") == 1
    refusal = {"message_type": "Referral", "sender": "police", "recipient": "education"}
    assert delta("mash_gateway_messages_total", **refusal, outcome="rejected") == 1
    assert delta("mash_gateway_rejects_total", check="policy", stage="router") == 1
    kind = {"message_type": "InformationRequest"}
    assert delta("mash_gateway_submit_to_routed_seconds_count", **kind) == 1
    assert delta("mash_gateway_submit_to_receipted_seconds_count", **kind) == 1
    assert delta("mash_gateway_submit_to_receipted_seconds_bucket", **kind, le="+Inf") == 1
    for operation in ("seal", "open", "verify"):
        assert delta("mash_gateway_operation_duration_seconds_count", operation=operation) >= 1
    # Keys made by `init` are valid for a long time; the gauge counts down from there.
    signing_left = value(
        after, "mash_gateway_key_expiry_seconds", agency="police", use="sign", role="edge"
    )
    assert signing_left > 30 * 86400
    # The inbox gauges: edges consume police, hub and education; nobody consumes probation.
    assert value(after, "mash_gateway_inbox_consumers", agency="police") == 1
    assert value(after, "mash_gateway_inbox_consumers", agency="probation") == 0
    assert ("mash_gateway_inbox_messages", frozenset({("agency", "probation")})) in after
    # Each agency's ingress queue, consumed by the router whether the agency sends or not.
    assert value(after, "mash_gateway_ingress_consumers", agency="probation") == 1
    assert ("mash_gateway_ingress_messages", frozenset({("agency", "police")})) in after
    # No ids ever become labels.
    for message_id in (request.message_id, refused.message_id, "CASE-M1"):
        assert message_id not in text
    promtool_check(text)


async def _has_async(exchange: Exchange, agency: str, message_type: str) -> bool:
    return _has(exchange, agency, message_type)


async def test_scrapes_during_a_burst_never_hold_up_messages(exchange: Exchange) -> None:
    """Eight scrapers in a tight loop while 40 requests go through the router and back."""
    hub = await exchange.edge("hub")
    await exchange.edge("police")
    scrapes = 0
    done = asyncio.Event()

    async def scraper(port: int) -> None:
        nonlocal scrapes
        while not done.is_set():
            await scrape(port)
            scrapes += 1

    async with serving(Listen("127.0.0.1", 0)) as port:
        assert port is not None
        scrapers = [asyncio.create_task(scraper(port)) for _ in range(8)]
        started = time.monotonic()
        for _ in range(40):
            await hub.submit(Submission(REQUEST, ("police",)))

        async def all_receipted() -> bool:
            return len(exchange.inboxes["hub"].of_type("DeliveryReceipt")) == 40

        await eventually(all_receipted, timeout=30)
        elapsed = time.monotonic() - started
        done.set()
        await asyncio.gather(*scrapers)
    assert scrapes >= 40, f"only {scrapes} scrapes were served during the burst"
    assert elapsed < 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_mash_gateway_run_serves_metrics_from_its_config(exchange: Exchange) -> None:
    """The deployed shape: `mash-gateway run` with [metrics] in gateway.toml and JSON logs."""
    await exchange.stop_router()
    port = _free_port()
    config_path = exchange.config.path
    with config_path.open("a", encoding="utf-8") as toml:
        toml.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    log_path = exchange.tmp / "router.log"
    with log_path.open("wb") as log_file:
        router = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config_path), "run", "--json-logs"],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:

        async def router_started() -> bool:
            assert router.poll() is None, log_path.read_text()
            return "router.started" in log_path.read_text()

        await eventually(router_started, timeout=20)
        hub = await exchange.edge("hub")
        await exchange.edge("police")
        sent = await hub.submit(Submission(REQUEST, ("police",), correlation_id="CASE-M3"))
        await eventually(lambda: _has_async(exchange, "hub", "DeliveryReceipt"))

        async def polled() -> bool:
            return "mash_gateway_inbox_consumers" in await scrape(port)

        await eventually(polled)
        text = await scrape(port)
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(20)
    samples = parse(text)
    flow = {"message_type": "InformationRequest", "sender": "hub", "recipient": "police"}
    assert value(samples, "mash_gateway_messages_total", **flow, outcome="routed") == 1
    assert value(samples, "mash_gateway_messages_total", **flow, outcome="delivered") == 1
    promtool_check(text)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    routed = [line for line in lines if line.get("event") == "message.routed"]
    assert routed and routed[0]["message_id"] == sent.message_id
    assert routed[0]["correlation_id"] == "CASE-M3"
    assert routed[0]["level"] == "info"
