"""Hostile and broken files in a file drop, against the real `mash-gateway adapter` process.

Issue 14, finding 4: a 244-character file name killed the adapter process,
and the HTTP adapter running in it; a symbolic link was followed out of the
drop folder and its target sent; a FIFO blocked the adapter for ever. Here
police's file drop and csc's HTTP adapter run in one process, as an area
runs them. Each bad entry must end in error/ with its reason, nothing of it
may reach the hub, and both adapters must go on working.

The process runs without CAP_DAC_OVERRIDE (setpriv), so file modes bind it
even when the tests run as root, as they bind an adapter under its own user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from adapters.profile import BUILTIN
from adapters.transports.filedrop import MAX_NAME_BYTES
from gateway.broker.vhost import BrokerAdmin
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.test_adapter_cli import free_port, listening

pytestmark = pytest.mark.integration

PPN = (BUILTIN / "police" / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()
EXPORT = (BUILTIN / "csc" / "samples" / "case-export-information-return.xml").read_bytes()
OUTSIDE_REF = b"PPN-2026-999999"  # the police reference in a file outside the drop folder
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def ppn(ref: str) -> bytes:
    """A police notice with its own reference, so two are not the same content."""
    return PPN.replace(b"PPN-2026-004512", ref.encode())


@dataclass
class Area:
    exchange: Exchange
    root: Path  # police's file drop
    csc_port: int
    metrics_port: int
    token: str
    stderr: Path

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def drop(self, name: str, data: bytes, mode: int = 0o600) -> None:
        """What an agency system does: write a hidden temp name, then rename into place."""
        temp = self.outbox / f".{name[:200]}.tmp"
        temp.write_bytes(data)
        os.chmod(temp, mode)
        os.rename(temp, self.outbox / name)

    def referrals(self) -> list[bytes]:
        return [m.payload for m in self.exchange.inboxes["hub"].of_type("Referral")]

    def log_events(self) -> list[str]:
        events = []
        for line in self.stderr.read_text().splitlines():
            try:
                events.append(json.loads(line)["event"])
            except (ValueError, KeyError, TypeError):
                continue
        return events

    async def post(self) -> int:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/xml"}
        url = f"http://127.0.0.1:{self.csc_port}/messages"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=EXPORT, headers=headers) as reply,
        ):
            return reply.status

    async def counted(self, stage: str) -> float:
        """The process's own count of police's file drop errors at ``stage``, from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as reply:
            text = await reply.text()
        wanted = f'agency="police",stage="{stage}",transport="filedrop"'
        for line in text.splitlines():
            if line.startswith("mash_gateway_adapter_errors_total{") and wanted in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def reasons(error: Path) -> dict[str, str]:
    """error/'s reasons by the agency's file name (the claim prefix taken off)."""
    return {
        p.name.split("--", 1)[1].removesuffix(".reason"): p.read_text()
        for p in error.iterdir()
        if p.name.endswith(".reason")
    }


@asynccontextmanager
async def adapter_process(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Area]:
    """`mash-gateway adapter police csc` on a fresh exchange; SIGTERM must end it with 0."""
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as exchange:
        await exchange.edge("hub")
        config = exchange.config.path
        csc_port, metrics_port = free_port(), free_port()
        text = config.read_text().replace("127.0.0.1:8441", f"127.0.0.1:{csc_port}")
        police_root = 'root = "agency-systems/police"\n'
        config.write_text(text.replace(police_root, police_root + "poll_seconds = 0.1\n"))
        issued = subprocess.run(
            cli(config, "adapter", "--issue-token", "csc"),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        token = issued.split(": ", 1)[1].strip()
        stderr = tmp_path / "adapter.log"
        command = cli(
            config,
            "adapter",
            "police",
            "csc",
            "--json-logs",
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
        )
        with stderr.open("wb") as log:
            process = subprocess.Popen(command, stderr=log)
        area = Area(
            exchange,
            config.parent / "agency-systems" / "police",
            csc_port,
            metrics_port,
            token,
            stderr,
        )
        try:
            await eventually(lambda: listening(csc_port), timeout=20)
            await eventually(lambda: _is_dir(area.outbox), timeout=20)
            yield area
            assert process.poll() is None, (
                "the adapter process died:\n" + stderr.read_text()[-3000:]
            )
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(20)
        assert code == 0, stderr.read_text()[-3000:]


def cli(config: Path, *args: str) -> list[str]:
    prefix = UNPRIVILEGED if os.geteuid() == 0 else []
    return [*prefix, sys.executable, "-m", "gateway", "--config", str(config), *args]


@pytest.fixture
async def area(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Area]:
    async with adapter_process(broker_admin, tmp_path) as running:
        yield running


async def test_hostile_entries_end_in_error_and_both_adapters_keep_working(
    area: Area, tmp_path: Path
) -> None:
    outside = tmp_path / "outside" / "secret.xml"
    outside.parent.mkdir()
    outside.write_bytes(ppn(OUTSIDE_REF.decode()))
    long_name = "p" * 240 + ".xml"  # 244 characters: the name that killed the process
    area.drop(long_name, ppn("PPN-2026-000244"))
    (area.outbox / "leak.xml").symlink_to(outside)
    os.mkfifo(area.outbox / "pipe.xml")
    area.drop("locked.xml", ppn("PPN-2026-000600"), mode=0o000)  # nobody may read it

    async def filed() -> bool:
        return len(reasons(area.root / "error")) == 4

    await eventually(filed, timeout=20)
    area.drop("good.xml", PPN)  # the file drop still sends
    await eventually(lambda: _some(area.referrals()), timeout=20)
    assert await area.post() == 202  # and the HTTP adapter beside it still answers

    found = reasons(area.root / "error")
    shortened = long_name[:MAX_NAME_BYTES]
    assert found[shortened] == (
        f"{long_name}: the name is 244 bytes long, over the {MAX_NAME_BYTES} the file drop "
        "takes; give it a shorter name and drop it again\n"
    )
    assert found["leak.xml"].startswith("leak.xml: is a symbolic link, not a regular file")
    assert found["pipe.xml"].startswith("pipe.xml: is a FIFO, not a regular file")
    assert found["locked.xml"] == "locked.xml: cannot read: Permission denied\n"
    error = area.root / "error"
    kept = {p.name.split("--", 1)[1]: p for p in error.iterdir() if not p.name.endswith(".reason")}
    assert sorted(kept) == sorted([shortened, "leak.xml", "pipe.xml", "locked.xml"])
    assert kept["leak.xml"].is_symlink() and outside.read_bytes() == ppn(OUTSIDE_REF.decode())
    assert kept["pipe.xml"].is_fifo()
    assert sorted(p.name for p in area.outbox.iterdir()) == []
    (referral,) = area.referrals()  # the good file only: nothing of the others was sent
    assert b"PPN-2026-004512" in referral and OUTSIDE_REF not in referral
    for stage, count in (("name", 1), ("not-a-file", 2), ("read", 1), ("crash", 0)):
        assert await area.counted(stage) == count, stage
    assert "adapter.crashed" not in area.log_events()


async def test_a_crashed_file_drop_restarts_and_the_http_adapter_never_notices(
    area: Area,
) -> None:
    area.outbox.rmdir()
    area.outbox.write_text("the drop folder, replaced by a file")  # every poll now fails

    async def crashed_twice() -> bool:  # it crashed, was restarted, and crashed again
        return await area.counted("crash") >= 2

    await eventually(crashed_twice, timeout=20)
    assert await area.post() == 202
    area.outbox.unlink()
    area.outbox.mkdir()
    area.drop("after.xml", PPN)
    await eventually(lambda: _some(area.referrals()), timeout=60)  # restarted, backoff and all
    assert await area.post() == 202
    assert "adapter.crashed" in area.log_events()


async def test_a_file_that_cannot_be_moved_is_left_and_reported_once(area: Area) -> None:
    os.chmod(area.root / "error", 0o500)  # no reason can be written, nothing moved in
    os.mkfifo(area.outbox / "pipe.xml")
    area.drop("first.xml", ppn("PPN-2026-000001"))
    await eventually(lambda: _count(area.referrals(), 1), timeout=20)
    area.drop("second.xml", ppn("PPN-2026-000002"))  # polls go on past the stuck FIFO
    await eventually(lambda: _count(area.referrals(), 2), timeout=20)
    assert [p.name for p in area.outbox.iterdir()] == ["pipe.xml"]
    assert area.log_events().count("file.stuck") == 1
    assert await area.counted("stuck") == 1
    assert await area.post() == 202


async def test_a_configuration_error_at_start_stops_the_process_naming_it(
    broker_admin: BrokerAdmin, tmp_path: Path
) -> None:
    """Supervision restarts what failed while running; a half-configured area does not start."""
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as exchange:
        config = exchange.config.path
        config.write_text(config.read_text().replace("127.0.0.1:8441", f"127.0.0.1:{free_port()}"))
        ended = subprocess.run(  # csc has no token issued
            cli(config, "adapter", "police", "csc"), capture_output=True, text=True, timeout=60
        )
    assert ended.returncode != 0
    assert "no token issued; run `mash-gateway adapter --issue-token csc`" in ended.stderr


async def _some(items: list[bytes]) -> bool:
    return bool(items)


async def _count(items: list[bytes], n: int) -> bool:
    return len(items) >= n


async def _is_dir(path: Path) -> bool:
    return path.is_dir()
