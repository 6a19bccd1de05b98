"""send, inbox and track through the real CLI, with the router running as `mash-gateway run`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from gateway.broker.publisher import publish
from gateway.broker.topology import INGRESS_ROUTING_KEY, ingress_exchange
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.registry import KeyUse
from gateway.core.resources import schemas_dir
from gateway.infra.clock import utc_now
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.integration

REQUEST = schemas_dir() / "examples" / "valid" / "information-request.xml"


@dataclass(frozen=True)
class RunningArea:
    config: Path
    amqp_url: str
    router: subprocess.Popen[bytes]
    log: Path

    def wait_for_log(self, text: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_bytes():
            assert self.router.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"{text!r} not logged: {self.log.read_text()}"
            time.sleep(0.05)


@pytest.fixture
def running(broker_admin: BrokerAdmin, tmp_path: Path) -> Iterator[RunningArea]:
    """A demo area on a fresh vhost with the router running in its own process."""
    vhost = f"mash-test-{uuid.uuid4().hex[:8]}"
    asyncio.run(broker_admin.create_vhost(vhost, "guest"))
    directory = tmp_path / "area"
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    config = directory / "gateway.toml"
    log = (tmp_path / "router.log").open("wb")
    router = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "run", "--json-logs"],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    area = RunningArea(config, vhost_url(AMQP_URL, vhost), router, tmp_path / "router.log")
    try:
        area.wait_for_log(b"router.started")
        yield area
    finally:
        router.terminate()
        router.wait(10)
        log.close()
        asyncio.run(broker_admin.delete_vhost(vhost))


@pytest.fixture
def area(running: RunningArea) -> Path:
    return running.config


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def test_send_inbox_and_track_carry_a_request_and_its_receipt(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli(
            area,
            "send",
            "--as",
            "hub",
            "--to",
            "police",
            str(REQUEST),
            "--correlation",
            "CASE-CLI-1",
        )
        == 0
    )
    sent = capsys.readouterr().out
    message_id = sent.split()[2]
    assert sent.startswith(f"sent InformationRequest {message_id} (case CASE-CLI-1)")

    police_dir = tmp_path / "police-inbox"
    assert cli(area, "inbox", "--as", "police", "--out", str(police_dir), "--idle", "2") == 0
    assert (police_dir / f"{message_id}.xml").read_bytes() == REQUEST.read_bytes()
    assert [p.name for p in police_dir.iterdir()] == [f"{message_id}.xml"]  # no temp files left

    hub_dir = tmp_path / "hub-inbox"
    assert cli(area, "inbox", "--as", "hub", "--out", str(hub_dir), "--idle", "2") == 0
    (receipt,) = hub_dir.iterdir()
    assert b"<DeliveryReceipt" in receipt.read_bytes()
    assert message_id.encode() in receipt.read_bytes()

    capsys.readouterr()
    assert cli(area, "track", message_id) == 0
    timeline = capsys.readouterr().out
    assert "submitted" in timeline and "routed" in timeline and "delivered" in timeline


def test_inbox_follow_stops_on_ctrl_c_after_writing_what_it_received(
    area: Path, tmp_path: Path
) -> None:
    """Ctrl-C ends a following inbox cleanly: what arrived is on disk and counted, no traceback."""
    out = tmp_path / "police-follow"
    inbox = subprocess.Popen(
        [
            *(sys.executable, "-m", "gateway", "--config", str(area)),
            *("inbox", "--as", "police", "--out", str(out), "--follow"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert inbox.stdout is not None
        assert b"Ctrl-C to stop" in inbox.stdout.readline()
        assert cli(area, "send", "--as", "hub", "--to", "police", str(REQUEST)) == 0
        assert b"received InformationRequest" in inbox.stdout.readline()
        inbox.send_signal(signal.SIGINT)
        rest, errors = inbox.communicate(timeout=30)
    finally:
        inbox.kill()
    assert inbox.returncode == 0, errors.decode()
    assert b"1 message(s) received" in rest
    assert b"Traceback" not in errors
    assert [p.suffix for p in out.iterdir()] == [".xml"]


def test_send_opens_no_store(area: Path, tmp_path: Path) -> None:
    """A sender records nothing: its config may name a store it cannot reach."""
    unreachable = area.with_name("send-only.toml")
    text = area.read_text().replace(
        'url = "sqlite:///state/gateway.db"', 'url = "postgresql://nobody@127.0.0.1:1/none"'
    )
    assert "127.0.0.1:1/none" in text
    unreachable.write_text(text)
    assert cli(unreachable, "send", "--as", "hub", "--to", "police", str(REQUEST)) == 0
    police_dir = tmp_path / "police-inbox"
    assert cli(area, "inbox", "--as", "police", "--out", str(police_dir), "--idle", "2") == 0
    assert [p.read_bytes() for p in police_dir.iterdir()] == [REQUEST.read_bytes()]


def test_send_refuses_an_invalid_file_naming_its_line(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad-request.xml"
    bad.write_text(REQUEST.read_text().replace("<Rag>Amber</Rag>", "<Rag>Purple</Rag>"))
    assert cli(area, "send", "--as", "hub", "--to", "police", str(bad)) == 1
    err = capsys.readouterr().err
    assert "bad-request.xml:" in err and "Rag" in err


def test_a_share_no_agreement_allows_comes_back_as_a_non_delivery_file(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    referral = schemas_dir() / "examples" / "demo" / "police-referral.xml"
    assert cli(area, "send", "--as", "police", "--to", "education", str(referral)) == 0
    out = tmp_path / "police-inbox"
    assert cli(area, "inbox", "--as", "police", "--out", str(out), "--idle", "2") == 0
    (notice,) = out.iterdir()
    assert b"<FailedCheck>policy</FailedCheck>" in notice.read_bytes()


def test_sighup_reloads_the_registry_so_a_revoked_key_stops_verifying(
    running: RunningArea, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = tmp_path / "request.env"
    assert (
        cli(
            running.config,
            "seal",
            "--from",
            "hub",
            "--to",
            "police",
            str(REQUEST),
            "-o",
            str(sealed),
        )
        == 0
    )
    hub_key = load_config(str(running.config)).registry.current_key("hub", KeyUse.SIGN, utc_now())
    assert cli(running.config, "keys", "revoke", hub_key.key_id, "--reason", "test: lost") == 0
    running.router.send_signal(signal.SIGHUP)
    running.wait_for_log(b"config.reloaded")

    async def submit_sealed() -> None:
        connection = await aio_pika.connect(running.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            ingress = await channel.get_exchange(ingress_exchange("hub"), ensure=False)
            await publish(
                ingress,
                sealed.read_bytes(),
                routing_key=INGRESS_ROUTING_KEY,
                message_id="sealed-before-revocation",
            )

    asyncio.run(submit_sealed())
    out = tmp_path / "hub-inbox"
    capsys.readouterr()
    assert cli(running.config, "inbox", "--as", "hub", "--out", str(out), "--idle", "2") == 0
    (notice,) = out.iterdir()
    assert b"<FailedCheck>key</FailedCheck>" in notice.read_bytes()
    assert b"revoked" in notice.read_bytes()
