"""MESH with large files: a document and one large file each way through the health adapter.

Run: .venv/bin/python bench/mesh_attachments.py [--size MiB] [--chunk MB]

On the local RabbitMQ (a fresh vhost, deleted afterwards) and a mesh-sandbox
on localhost (STORE_MODE=memory), with the router and the health adapter each
in its own process (``python -m gateway run`` and ``adapter health``, as
deployed), it prints, for a file of ``--size`` MiB (default 100) in MESH
chunks of ``--chunk`` MB (default 20, the adapter's default):

- bare: mesh-client alone sending the same ZIP from the trust's mailbox to
  the adapter's, and the adapter's mailbox streaming it to disk: the ceiling;
- inbound: from the trust's send of a ZIP (the CP-IS notification and the
  file) until the hub's system has the Referral and has read the file;
- outbound: from the hub's submit of an InformationRequest with the file
  until the trust's system has streamed the ZIP MESH holds to disk;
- the adapter process's peak RSS over both (wait4), and the size of the file.

The sandbox keeps every message in its own memory, so its RSS is not the
adapter's concern and is not reported.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import signal
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mesh_client import MeshClient

from adapters.profile import BUILTIN
from adapters.transports.mesh import secret_files
from bench.adapters import MESH_KEY, MESH_PASSWORD, reset, start_sandbox
from bench.attachments import wait_rss
from bench.e2e import fresh_vhost, spawn
from gateway.cli import main as cli_main
from gateway.config.area_config import load_config
from gateway.core.resources import schemas_dir
from gateway.infra import logs
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.transfer_sender import AttachmentFile
from gateway.store.sqlite import SqliteStore

NOTIFICATION = (BUILTIN / "health" / "samples" / "cpis-attendance.xml").read_bytes()
REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
ADAPTER_BOX, TRUST_BOX = "X26ABC1", "X26ABC2"
BLOCK = 1 << 20


def client(url: str, mailbox: str, chunk: int) -> MeshClient:
    return MeshClient(
        url, mailbox, MESH_PASSWORD, shared_key=MESH_KEY.encode(), max_chunk_size=chunk
    )


def random_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for start in range(0, size, BLOCK):
            out.write(os.urandom(min(BLOCK, size - start)))


def download(box: MeshClient, target: Path, subject: str | None = None) -> None:
    """Wait for a message (of ``subject``), stream it to ``target``, acknowledge it; others
    (the receipts the hub sends the trust) are acknowledged unread."""
    while True:
        for mesh_id in box.list_messages():
            message = box.retrieve_message(mesh_id)
            wanted = subject is None or message.subject == subject
            try:
                if wanted:
                    with target.open("wb") as out:
                        while block := message.read(BLOCK):
                            out.write(block)
            finally:
                message.close()  # type: ignore[no-untyped-call]
            box.acknowledge_message(mesh_id)
            if wanted:
                return
        time.sleep(0.05)


def send(url: str, chunk: int, archive: Path) -> None:
    with client(url, TRUST_BOX, chunk) as trust, archive.open("rb") as data:
        trust.send_message(
            ADAPTER_BOX, data, workflow_id="CPIS_NOTIFICATION", content_type="application/zip"
        )


def bare(url: str, chunk: int, archive: Path, tmp: Path) -> float:
    """The trust's client sends the ZIP, the adapter's mailbox streams it to disk."""
    started = time.perf_counter()
    send(url, chunk, archive)
    with client(url, ADAPTER_BOX, chunk) as box:
        download(box, tmp / "bare.zip")
    return time.perf_counter() - started


class HubSystem:
    """The hub's system: reads each file it is handed, as a case system would store it."""

    def __init__(self) -> None:
        self.referrals = 0
        self.receipts = 0

    async def handler(self, delivered: Delivered) -> None:
        for file in delivered.attachments:
            await asyncio.to_thread(read_all, file.path)
        kind = delivered.header.fields.message_type
        self.referrals += kind == "Referral"
        self.receipts += kind == "DeliveryReceipt"


def read_all(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


async def until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"not done within {timeout} s")
        await asyncio.sleep(0.05)


def configure(area: Path, url: str, chunk: int) -> None:
    """Point the demo area's health adapter at the sandbox, with the chunk size asked for."""
    path = area / "gateway.toml"
    text = path.read_text().replace('url = "http://127.0.0.1:8700"', f'url = "{url}"')
    text = text.replace(
        'root = "agency-systems/health"\n',
        f'root = "agency-systems/health"\nmax_chunk_size = {chunk}\n'
        "poll_seconds = 0.2\ntrack_seconds = 0.5\n",
    )
    path.write_text(text)
    config = load_config(str(path))
    for secret_path, secret in zip(
        secret_files(config.private_keys_dir, "health"), (MESH_PASSWORD, MESH_KEY), strict=True
    ):
        secret_path.parent.mkdir(parents=True, exist_ok=True)
        secret_path.write_text(secret)
        os.chmod(secret_path, 0o600)


async def bench(size: int, chunk: int) -> dict[str, float]:
    results: dict[str, float] = {}
    url, delete = await fresh_vhost("mesh-files")
    with tempfile.TemporaryDirectory(prefix="mash-bench-mesh-") as tmp_name:
        tmp = Path(tmp_name)
        area = tmp / "area"
        assert cli_main(["init", str(area), "--broker-url", url]) == 0
        sandbox, mesh_url = await start_sandbox(tmp)
        configure(area, mesh_url, chunk)
        config_path = area / "gateway.toml"
        config = load_config(str(config_path))
        gateway = [sys.executable, "-m", "gateway", "--config", str(config_path)]
        router = await spawn([*gateway, "run", "--json-logs"], tmp / "router.log", "router.started")
        adapter = None
        hub = None
        try:
            scan = tmp / "scan.bin"
            random_file(scan, size)
            archive = tmp / "notification.zip"
            with zipfile.ZipFile(archive, "w", allowZip64=True) as out:
                out.writestr("notification.xml", NOTIFICATION)
                out.write(scan, "attachments/scan.bin")
            for box in (ADAPTER_BOX, TRUST_BOX):
                reset(mesh_url, box)
            results["bare"] = await asyncio.to_thread(bare, mesh_url, chunk, archive, tmp)

            adapter = await spawn(
                [*gateway, "adapter", "health", "--json-logs"],
                tmp / "adapter.log",
                "adapter.started",
            )
            store = SqliteStore(str(tmp / "hub-edge.db"))
            await store.open()
            hub = Edge(config, "hub", store)
            await hub.__aenter__()
            system = HubSystem()
            await hub.consume(system.handler, takes_attachments=True)

            started = time.perf_counter()
            await asyncio.to_thread(send, mesh_url, chunk, archive)
            await until(lambda: system.referrals == 1, 600)
            results["inbound"] = time.perf_counter() - started

            started = time.perf_counter()
            await hub.submit(Submission(REQUEST, ("health",), attachments=(AttachmentFile(scan),)))
            with client(mesh_url, TRUST_BOX, chunk) as trust:
                await asyncio.to_thread(download, trust, tmp / "received.zip", "InformationRequest")
            results["outbound"] = time.perf_counter() - started
            await until(lambda: system.receipts == 1, 60)  # receipted once downloaded

            adapter.process.send_signal(signal.SIGTERM)
            results["adapter_rss"] = wait_rss(adapter.process)
            adapter = None
        finally:
            if hub is not None:
                await hub.__aexit__(None, None, None)
            if adapter is not None:
                adapter.stop()
            router.stop()
            sandbox.stop()
            await delete()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="the file, in MiB")
    parser.add_argument("--chunk", type=int, default=20, help="MESH chunk, in MB")
    args = parser.parse_args()
    logs.configure(json=True, quiet=True)
    size, chunk = args.size * 1024 * 1024, args.chunk * 1000 * 1000
    print(f"# MESH with files, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.size} MiB file, {args.chunk} MB chunks"
    )
    r = asyncio.run(bench(size, chunk))
    mib = size / 1024 / 1024
    for part in ("bare", "inbound", "outbound"):
        print(f"{part:9} {r[part]:7.1f} s  {mib / r[part]:6.1f} MiB/s")
    print(f"adapter peak RSS {r['adapter_rss']:.0f} MiB")


if __name__ == "__main__":
    main()
