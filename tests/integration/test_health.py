"""/healthz and /readyz over real HTTP: the router process, an edge's consumer, a failing check."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.broker.topology import ingress_queue
from gateway.broker.vhost import BrokerAdmin
from gateway.cli import main
from gateway.config.metrics_config import Listen
from gateway.services import health, metrics_server
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.test_metrics import _free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def get(port: int, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


@pytest.fixture
def clean_readiness() -> Iterator[None]:
    """Each test sees only the checks it registers (the registry is process-wide)."""
    kept = dict(health.READINESS.checks)
    health.READINESS.checks.clear()
    yield
    health.READINESS.checks.clear()
    health.READINESS.checks.update(kept)


async def test_the_router_process_is_alive_then_ready(exchange: Exchange) -> None:
    await exchange.stop_router()
    port = _free_port()
    log_path = exchange.tmp / "router.log"
    with log_path.open("wb") as log_file:
        router = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "--config", str(exchange.config.path)),
                *("run", "--metrics-listen", f"127.0.0.1:{port}"),
            ],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:

        async def ready() -> bool:
            assert router.poll() is None, log_path.read_text()
            try:
                status, _ = await get(port, "/readyz")
            except aiohttp.ClientConnectionError:
                return False
            return status == 200

        await eventually(ready, timeout=30)
        assert await get(port, "/healthz") == (200, {"alive": True})
        status, body = await get(port, "/readyz")
        assert status == 200 and body["ready"] is True
        assert body["checks"] == {
            "broker (router)": "ok",
            **{
                f"consumer {ingress_queue(a)}": "ok" for a in exchange.config.inbox_agencies
            },  # one per agency's ingress
            "router": "ok",
            "store": "ok",
        }
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(20)


async def test_readyz_names_what_is_not_ready(clean_readiness: None) -> None:
    async with metrics_server.serving(Listen("127.0.0.1", 0)) as port:
        assert port is not None
        status, body = await get(port, "/readyz")
        assert status == 503 and body["checks"] == {"service": "starting: nothing registered yet"}

        async def down() -> str | None:
            return "not connected to RabbitMQ (reconnecting)"

        async def stuck() -> str | None:
            await asyncio.sleep(60)
            return None

        with (
            health.READINESS.watching("broker (police)", down),
            health.READINESS.watching("store", stuck),
        ):
            status, body = await get(port, "/readyz")
        assert status == 503 and body == {
            "ready": False,
            "checks": {
                "broker (police)": "not connected to RabbitMQ (reconnecting)",
                "store": "no answer within 2 s",
            },
        }
        assert (await get(port, "/healthz"))[0] == 200  # alive, just not ready
        url = f"http://127.0.0.1:{port}/readyz"
        with health.READINESS.watching("broker (police)", down):
            assert await asyncio.to_thread(main, ["health", url]) == 1
        passed = asyncio.Event()
        passed.set()
        with health.READINESS.watching("store", health.started(passed, "the store")):
            assert await asyncio.to_thread(main, ["health", "--wait", "5", url]) == 0
    assert await asyncio.to_thread(main, ["health", url]) == 1  # nobody answers now


async def test_an_edge_is_ready_once_its_inbox_consumer_is_attached(
    exchange: Exchange, clean_readiness: None
) -> None:
    async with metrics_server.serving(Listen("127.0.0.1", 0)) as port:
        assert port is not None
        edge = await exchange.edge("police", consume=False)
        status, body = await get(port, "/readyz")
        assert status == 200 and body["checks"] == {"broker (police)": "ok"}

        async def take(_: object) -> None:
            return None

        await edge.consume(take)  # type: ignore[arg-type]
        status, body = await get(port, "/readyz")
        assert body["checks"]["consumer agency.police.inbox"] == "ok"
        await edge.__aexit__(None, None, None)
        del exchange.edges["police"]
        await edge.store.close()  # type: ignore[union-attr]
        status, body = await get(port, "/readyz")
        assert status == 503  # it registered the only checks, and took them away on closing


async def served_ready(
    exchange: Exchange, argv: list[str], name: str
) -> tuple[dict[str, str], str]:
    """Start ``mash-gateway ARGV --metrics-listen``; its /readyz checks once ready, and /metrics."""
    port = _free_port()
    log_path = exchange.tmp / f"{name}.log"
    with log_path.open("wb") as log_file:
        service = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "--config", str(exchange.config.path)),
                *argv,
                *("--metrics-listen", f"127.0.0.1:{port}"),
            ],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:

        async def ready() -> bool:
            assert service.poll() is None, log_path.read_text()
            try:
                status, _ = await get(port, "/readyz")
            except aiohttp.ClientConnectionError:
                return False
            return status == 200

        await eventually(ready, timeout=40)
        _, body = await get(port, "/readyz")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            scraped = await response.text()
        return body["checks"], scraped
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(20)


async def test_the_intake_is_ready_with_its_tls_loaded_and_its_inbox_consumed(
    exchange: Exchange,
) -> None:
    toml = exchange.config.path
    toml.write_text(toml.read_text().replace('"127.0.0.1:8025"', f'"127.0.0.1:{_free_port()}"', 1))
    checks, scraped = await served_ready(exchange, ["intake"], "intake")
    assert checks["tls"] == "ok" and checks["store"] == "ok"
    assert checks["consumer agency.housing.inbox"] == "ok"  # housing is e-mail only
    assert all(v == "ok" for v in checks.values())
    assert 'mash_gateway_certificate_expiry_seconds{use="smtp-tls"}' in scraped


async def test_the_quarantine_keeper_is_ready_and_reports_its_holdings(exchange: Exchange) -> None:
    checks, scraped = await served_ready(exchange, ["quarantine", "keep"], "keeper")
    assert checks == {"broker (quarantine keeper)": "ok", "keeper": "ok", "store": "ok"}
    assert 'mash_gateway_quarantine_held{measure="limit_messages"} 10000.0' in scraped
