"""SIGHUP to running processes: the router takes new [deadlines], an adapter its new keys.

Each test runs the service as its own process (`mash-gateway run`,
`mash-gateway adapter`), edits gateway.toml the way an operator does (by
hand, or with `keys rotate` / `keys revoke`), sends SIGHUP, and watches
what the process does next: no restart in between.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import aio_pika
import pytest

from adapters.profile import BUILTIN
from gateway.broker import topology
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.deadlines import Counting, Duration, Timer
from gateway.core.registry import KeyUse
from gateway.core.resources import schemas_dir
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services.escalator import Escalator
from gateway.services.router import Router
from gateway.store.sqlite import SqliteStore
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

REQUEST = schemas_dir() / "examples" / "valid" / "information-request.xml"
PPN = (BUILTIN / "police" / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()
# Seconds, around the clock: a delivery deadline and the grace before level 2.
SHORT_DEADLINES = """
[deadlines]
delivery = { duration = "1s", counting = "clock" }
grace = { duration = "1s", counting = "clock" }
"""


@dataclass(frozen=True)
class Service:
    """A `mash-gateway` process whose JSON log lines go to a file the test reads."""

    process: subprocess.Popen[bytes]
    log: Path

    def wait_for_log(self, text: bytes, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.log.read_bytes().count(text) < count:
            assert self.process.poll() is None, f"exited: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{text!r} not logged: {self.log.read_text()}"
            time.sleep(0.05)

    def hang_up(self, reloaded: bytes) -> None:
        """SIGHUP, then wait for the ``reloaded`` log line it should produce."""
        before = self.log.read_bytes().count(reloaded)
        self.process.send_signal(signal.SIGHUP)
        self.wait_for_log(reloaded, count=before + 1)


@contextmanager
def service(config: Path, log: Path, *args: str) -> Iterator[Service]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), *args, "--json-logs"],
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield Service(process, log)
        finally:
            process.terminate()
            code = process.wait(20)
        assert code == 0, log.read_text()[-3000:]


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


# --- the router: [deadlines] -------------------------------------------------------------


@pytest.fixture
def area(broker_admin: BrokerAdmin, tmp_path: Path) -> Iterator[Path]:
    """A demo area on a fresh vhost."""
    vhost = f"mash-test-{uuid.uuid4().hex[:8]}"
    asyncio.run(broker_admin.create_vhost(vhost, "guest"))
    directory = tmp_path / "area"
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    try:
        yield directory / "gateway.toml"
    finally:
        asyncio.run(broker_admin.delete_vhost(vhost))


def test_sighup_reloads_deadlines_in_the_router_and_its_escalator(
    area: Path, tmp_path: Path
) -> None:
    """The new delivery deadline opens on the next message (the router's policy), and the
    new grace moves it to level 2 (the escalator's): both within seconds, not 15 min and 1 h."""
    with service(area, tmp_path / "router.log", "run") as router:
        router.wait_for_log(b"router.started")
        with area.open("a", encoding="utf-8") as config:
            config.write(SHORT_DEADLINES)
        router.hang_up(b"config.reloaded")
        levels = asyncio.run(_escalation_levels(area, vhost_url_of(area)))
    assert levels[:2] == [1, 2]


def test_a_policy_given_in_place_of_the_config_s_outlives_a_reload(tmp_path: Path) -> None:
    """The demo runs on a shortened clock given to the router: SIGHUP must not undo it."""
    assert main(["init", str(tmp_path / "area")]) == 0
    path = tmp_path / "area" / "gateway.toml"
    config = load_config(str(path))
    signer = keystore.load_signing_identity(config, config.gateway, utc_now())
    store = SqliteStore(str(tmp_path / "tracking.db"))  # never opened: nothing is routed
    given = replace(config.deadlines, grace=Timer(Duration(seconds=2), Counting.CLOCK))
    with path.open("a", encoding="utf-8") as edited:
        edited.write(SHORT_DEADLINES)
    reloaded = load_config(str(path))
    for policy, kept in ((None, reloaded.deadlines), (given, given)):
        router = Router(config, store, signer, policy=policy)
        escalator = Escalator(config, store, signer, policy=policy)
        router.reload(reloaded)
        escalator.reload(reloaded, router.signer)
        assert (router.policy, escalator.policy) == (kept, kept)
    assert reloaded.deadlines != config.deadlines


def vhost_url_of(config: Path) -> str:
    return load_config(str(config)).broker_url


async def _escalation_levels(config: Path, amqp_url: str) -> list[int]:
    """Send a request police never receipts (no police consumer); the levels escalated."""
    levels: list[int] = []
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        events = await channel.declare_queue(exclusive=True)
        await events.bind(topology.EVENTS_EXCHANGE, routing_key="deadline.escalated.#")
        sending = ("send", "--as", "hub", "--to", "police", str(REQUEST))
        assert await asyncio.to_thread(cli, config, *sending) == 0  # the CLI runs its own loop

        async def reached_level_2() -> bool:
            while (message := await events.get(fail=False)) is not None:
                await message.ack()
                event = json.loads(message.body)
                if event["kind"] == "delivery":
                    levels.append(event["level"])
            return 2 in levels

        await eventually(reached_level_2, timeout=30)
    return levels


# --- an adapter: its keys ----------------------------------------------------------------


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        await running.edge("hub")
        yield running


@asynccontextmanager
async def police_adapter(exchange: Exchange, tmp_path: Path) -> AsyncIterator[Service]:
    """`mash-gateway adapter police` (the demo's file drop) as its own process."""
    with service(exchange.config.path, tmp_path / "adapter.log", "adapter", "police") as adapter:
        adapter.wait_for_log(b"adapter.started")
        yield adapter


def drop(exchange: Exchange, name: str, data: bytes) -> None:
    outbox = exchange.config.base_dir / "agency-systems" / "police" / "outbox"
    (outbox / f"{name}.tmp").write_bytes(data)
    os.rename(outbox / f"{name}.tmp", outbox / name)


def police_signing_key(config: Path) -> str:
    return load_config(str(config)).registry.current_key("police", KeyUse.SIGN, utc_now()).key_id


def signing_keys_of_referrals(exchange: Exchange) -> list[str]:
    return [m.header.signing_key_id for m in exchange.inboxes["hub"].of_type("Referral")]


async def test_after_rotate_revoke_and_sighup_the_adapter_signs_with_the_successor(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = exchange.config.path
    old_key = police_signing_key(config)
    async with police_adapter(exchange, tmp_path) as adapter:
        drop(exchange, "first.xml", PPN)
        await eventually(lambda: _referrals(exchange, 1), timeout=20)

        assert cli(config, "keys", "rotate", "--agency", "police", "--use", "sign") == 0
        new_key = police_signing_key(config)
        assert cli(config, "keys", "revoke", old_key, "--reason", "test: laptop lost") == 0
        await exchange.restart_router()  # the router, too, now refuses the old key
        exchange.edges["hub"].reload(load_config(str(config)))  # and the hub knows the new one
        adapter.hang_up(b"adapter.reloaded")

        drop(exchange, "second.xml", PPN.replace(b"PPN-2026-004512", b"PPN-2026-004513"))
        await eventually(lambda: _referrals(exchange, 2), timeout=20)
    assert signing_keys_of_referrals(exchange) == [old_key, new_key]


async def test_after_a_revocation_and_sighup_the_adapter_signs_nothing_with_the_revoked_key(
    exchange: Exchange, tmp_path: Path
) -> None:
    """No successor yet: the file is refused at the adapter, naming why. The router is left
    on the old registry on purpose: it would still accept the revoked key, so only the
    adapter's own check stands between that key and the hub."""
    config = exchange.config.path
    error = exchange.config.base_dir / "agency-systems" / "police" / "error"
    key = police_signing_key(config)
    async with police_adapter(exchange, tmp_path) as adapter:
        assert cli(config, "keys", "revoke", key, "--reason", "test: laptop lost") == 0
        adapter.hang_up(b"adapter.reloaded")
        drop(exchange, "after-revocation.xml", PPN)

        async def refused() -> bool:
            return any(n.endswith("--after-revocation.xml") for n in os.listdir(error))

        await eventually(refused, timeout=20)
    (reason,) = [p.read_text() for p in error.iterdir() if p.name.endswith(".reason")]
    assert reason == (
        f"agency 'police' has no valid sign key: key {key} is revoked (test: laptop lost)\n"
    )
    assert exchange.inboxes["hub"].of_type("Referral") == []


async def _referrals(exchange: Exchange, count: int) -> bool:
    return len(exchange.inboxes["hub"].of_type("Referral")) >= count
