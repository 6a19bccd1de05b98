"""send, inbox and track through the real CLI, with the router running as `mash-gateway run`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.resources import schemas_dir
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.integration

REQUEST = schemas_dir() / "examples" / "valid" / "information-request.xml"


@pytest.fixture
def area(broker_admin: BrokerAdmin, tmp_path: Path) -> Iterator[Path]:
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
    try:
        deadline = time.monotonic() + 20
        while b"router.started" not in (tmp_path / "router.log").read_bytes():
            assert router.poll() is None, (tmp_path / "router.log").read_text()
            assert time.monotonic() < deadline, "router did not start"
            time.sleep(0.05)
        yield config
    finally:
        router.terminate()
        router.wait(10)
        log.close()
        asyncio.run(broker_admin.delete_vhost(vhost))


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
