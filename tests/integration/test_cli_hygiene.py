"""What a new user trips on first: --version, --json, a closed pipe, a broker not set up yet."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import topology
from gateway.broker.connection import connect
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.core.resources import schemas_dir
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "gateway"]
REFERRAL = schemas_dir() / "examples" / "valid" / "referral.xml"


@pytest.fixture
def area(broker_admin: BrokerAdmin, tmp_path: Path) -> Iterator[Path]:
    """An area on a fresh vhost where nothing is declared yet: `broker setup` never ran."""
    vhost = f"mash-test-{uuid.uuid4().hex[:8]}"
    asyncio.run(broker_admin.create_vhost(vhost, "guest"))
    directory = tmp_path / "area"
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    try:
        yield directory / "gateway.toml"
    finally:
        asyncio.run(broker_admin.delete_vhost(vhost))


def test_version_names_the_installed_release() -> None:
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.startswith("mash-gateway 0.")


def test_a_closed_pipe_ends_quietly(area: Path) -> None:
    """`keys list | head -1`: the reader is gone before the command writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [*CLI, "--config", str(area), "keys", "list"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_keys_list_json_lists_every_key_with_its_status(
    area: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--config", str(area), "keys", "list", "--agency", "police", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert {(k["agency"], k["use"], k["role"], k["status"]) for k in keys} == {
        ("police", "sign", "edge", "current"),
        ("police", "encrypt", "edge", "current"),
        ("police", "sign", "intake", "current"),  # the e-mail intake's key for police
    }


def test_a_service_started_before_broker_setup_says_what_to_run(area: Path) -> None:
    done = subprocess.run(
        [*CLI, "--config", str(area), "inbox", "--as", "police", "--out", str(area.parent / "in")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "no queue 'agency.police.inbox'" in done.stderr
    assert "run `mash-gateway broker setup`" in done.stderr


def test_send_json_prints_the_ids_it_sent(area: Path) -> None:
    async def declare() -> None:
        text = area.read_text()
        url = text.split('url = "', 1)[1].split('"', 1)[0]  # [broker] comes first
        connection = await connect(url)
        async with connection:
            await topology.declare(
                await connection.channel(), ["hub", "education"], topology.Limits()
            )

    asyncio.run(declare())
    done = subprocess.run(
        [
            *CLI,
            "--config",
            str(area),
            "send",
            "--as",
            "education",
            "--to",
            "hub",
            str(REFERRAL),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert (sent["message_type"], sent["sender"], sent["recipients"]) == (
        "Referral",
        "education",  # a school's referral: its UPN may travel only in education flows
        ["hub"],
    )
    assert sent["message_id"] and sent["correlation_id"]
