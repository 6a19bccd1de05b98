"""A 1 GiB attachment survives ``kill -9`` of the router or the receiving edge, a broker restart.

Each fault lands mid-transfer (once a third of the pieces are staged at the
receiving edge). Afterwards the transfer completes by itself (the router and
the edge restarted by the test, the way systemd would), and:
- the file in the inbox folder is byte-identical to the one sent;
- it was handed over exactly once (the inbox printed it once);
- nothing partial was ever visible: a watcher polls the inbox folder all
  along and fails on a ``.xml`` without its whole ``.attachments`` folder, or
  a folder whose file is short.

The sender, the router and the receiving edge are the real commands, each
its own process. Run only against a broker nobody else uses (the broker
fault restarts the node).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fault.conftest import FaultArea, broker_stopped

pytestmark = pytest.mark.fault

SIZE = 1024 * 1024 * 1024
REQUEST = Path(__file__).parents[2] / "schemas" / "examples" / "valid" / "information-request.xml"
WAIT_S = 900.0


def make_file(path: Path) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with path.open("wb") as out:
        for n in range(SIZE // len(block)):
            chunk = n.to_bytes(8, "big") + block[8:]
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Inbox:
    """``mash-gateway inbox --follow`` as police, restartable, its output kept."""

    def __init__(self, area: FaultArea, out: Path) -> None:
        self.area, self.out = area, out
        self.log = area.tmp / "inbox.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            command = ["inbox", "--as", "police", "--out", str(self.out), "--follow"]
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.area.config.path), *command],
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def handed_over(self, message_id: str) -> int:
        return self.log.read_text(errors="replace").count(
            f"received InformationRequest {message_id}"
        )


def staged_pieces(area: FaultArea) -> int:
    root = area.config.base_dir / "state" / "transfers" / "police"
    return sum(1 for _ in root.glob("*/*.piece")) if root.exists() else 0


async def watch(out: Path, size: int, stop: asyncio.Event) -> list[str]:
    """What a folder watcher would have seen that it must not: anything partial."""
    seen: list[str] = []
    while not stop.is_set():
        for xml in out.glob("*.xml"):
            files = out / f"{xml.stem}.attachments"
            if not files.is_dir():
                seen.append(f"{xml.name} without its folder")
            elif [p.stat().st_size for p in files.iterdir()] != [size]:
                seen.append(f"{xml.name} with a partial folder")
        for folder in out.glob("*.attachments"):
            if [p.stat().st_size for p in folder.iterdir()] != [size]:
                seen.append(f"{folder.name} partial")
        await asyncio.sleep(0.05)
    return seen


@pytest.mark.parametrize("fault", ["router", "receiving-edge", "broker"])
async def test_a_1_gib_transfer_completes_once_and_whole_after_a_fault(
    area: FaultArea, rabbitmqctl: str, fault: str
) -> None:
    source = area.tmp / "interview.mp4"
    expected = await asyncio.to_thread(make_file, source)
    out = area.tmp / "police-inbox"
    out.mkdir()
    inbox = Inbox(area, out)
    inbox.start()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(out, SIZE, stop))
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--config", str(area.config.path),
        "send", "--as", "hub", "--to", "police", str(REQUEST), "--attach", str(source),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + WAIT_S
    try:
        await area.wait_for("a third staged", lambda: staged_pieces(area) >= 340, deadline)
        if fault == "router":
            area.router.kill()
            await area.router.start()
        elif fault == "receiving-edge":
            inbox.kill()
            inbox.start()
        else:
            async with broker_stopped(rabbitmqctl):
                await asyncio.sleep(3)
        stdout, _ = await sender.communicate()
        assert sender.returncode == 0, "the sender gave up"
        message_id = stdout.split()[2].decode()
        await area.wait_for(
            "the message in the inbox folder", (out / f"{message_id}.xml").exists, deadline
        )
        await asyncio.sleep(3)  # a repeated hand-over would show by now
    finally:
        stop.set()
        partial = await watcher
        inbox.stop()
    assert partial == []
    assert sha256(out / f"{message_id}.attachments" / "interview.mp4") == expected
    assert inbox.handed_over(message_id) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        f"{message_id}.attachments",
        f"{message_id}.xml",
    ]
    assert staged_pieces(area) == 0
