"""HTTP upload benchmark: one large file POSTed to the csc adapter as a form, to the hub's inbox.

Run: .venv/bin/python bench/http_upload.py [--size MiB ...]   (default: 256 and 1024)

On the local RabbitMQ, in a fresh vhost deleted afterwards, with the demo
area, each its own process: the router (``mash-gateway run``), the csc
adapter (``mash-gateway adapter csc``, HTTP on a free port) and the hub's
receiving edge (``mash-gateway inbox --as hub --follow``). This process
POSTs ``multipart/form-data`` (the csc case export, then the file, streamed
from disk by aiohttp) and answers csc's webhook. For each size it prints:

- upload: the file's size over the time from the first byte sent to the
  202 (the adapter has spooled, digested, sealed and published the transfer);
- end to end: over the time until ``<message id>.xml`` is in the hub's inbox
  folder (after its file);
- hub -> csc webhook: then ``mash-gateway send --as hub --to csc --attach``
  the same file, over the time until the csc adapter's form POST has reached
  this process's webhook whole (read through, part by part);
- the csc adapter's peak RSS over both directions and the hub edge's (wait4,
  ``ru_maxrss``).

Target (issue 13): the adapter's RSS flat, the same for every size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from adapters.profile import BUILTIN
from bench.attachments import make_file, wait_rss
from gateway.broker.vhost import admin_for, vhost_url
from gateway.cli import main as cli
from gateway.core.resources import schemas_dir

BASE_URL = os.environ.get("MASH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MIB = 1024 * 1024
EXPORT = BUILTIN / "csc" / "samples" / "case-export-information-return.xml"
REQUEST = schemas_dir() / "examples" / "valid" / "information-request.xml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until_logged(log: Path, event: bytes) -> None:
    while event not in log.read_bytes():
        await asyncio.sleep(0.1)


async def one_size(size: int, work: Path) -> dict[str, float]:
    admin = await admin_for(BASE_URL)
    vhost = f"mash-bench-{uuid.uuid4().hex[:8]}"
    await admin.create_vhost(vhost, "guest")
    webhook = Webhook()
    hook = web.Application()
    hook.router.add_post("/mash", webhook.handle)
    hook_runner = web.AppRunner(hook)
    try:
        area = work / "area"
        assert cli(["init", str(area), "--broker-url", vhost_url(BASE_URL, vhost)]) == 0
        config = area / "gateway.toml"
        port, hook_port = free_port(), free_port()
        text = config.read_text().replace("127.0.0.1:8441", f"127.0.0.1:{port}")
        config.write_text(text.replace("127.0.0.1:9441", f"127.0.0.1:{hook_port}"))
        await hook_runner.setup()
        await web.TCPSite(hook_runner, "127.0.0.1", hook_port).start()
        gateway = [sys.executable, "-m", "gateway", "--config", str(config)]
        token = (
            subprocess.run(
                [*gateway, "adapter", "--issue-token", "csc"], capture_output=True, check=True
            )
            .stdout.split()[-1]
            .decode()
        )
        logs = {name: work / f"{name}.log" for name in ("router", "adapter")}
        router = subprocess.Popen([*gateway, "run"], stderr=logs["router"].open("wb"))
        await until_logged(logs["router"], b"router.started")
        adapter = subprocess.Popen([*gateway, "adapter", "csc"], stderr=logs["adapter"].open("wb"))
        await until_logged(logs["adapter"], b"adapter.started")
        out = work / "inbox"
        inbox = subprocess.Popen(
            [*gateway, "inbox", "--as", "hub", "--out", str(out), "--follow"],
            stdout=subprocess.DEVNULL,
        )
        await asyncio.sleep(2)  # the edge is consuming
        video = work / "interview.mp4"
        make_file(video, size)
        form = aiohttp.MultipartWriter("form-data")
        form.append(
            EXPORT.read_bytes(), {"Content-Type": "application/xml"}
        ).set_content_disposition("form-data", name="document")
        with video.open("rb") as handle:
            form.append(handle, {"Content-Type": "video/mp4"}).set_content_disposition(
                "form-data", name="attachment", filename=video.name
            )
            started = time.monotonic()
            timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    f"http://127.0.0.1:{port}/messages",
                    data=form,
                    headers={"Authorization": f"Bearer {token}"},
                ) as reply,
            ):
                answer = await reply.json()
                assert reply.status == 202, answer
        uploaded = time.monotonic() - started
        (message_id,) = answer["message_ids"]
        while not (out / f"{message_id}.xml").exists():
            await asyncio.sleep(0.05)
        delivered = time.monotonic() - started
        received = out / f"{message_id}.attachments" / video.name
        assert received.stat().st_size == size, "the file arrived cut"
        inbox.kill()
        edge_rss = await asyncio.to_thread(wait_rss, inbox)
        # The other way: the hub sends the file to csc, whose adapter POSTs it to the webhook.
        started = time.monotonic()
        send = ["send", "--as", "hub", "--to", "csc", str(REQUEST), "--attach", str(video)]
        subprocess.run([*gateway, *send], stdout=subprocess.DEVNULL, check=True)
        while size not in webhook.files:
            await asyncio.sleep(0.05)
        posted = time.monotonic() - started
        adapter.send_signal(signal.SIGTERM)
        adapter_rss = await asyncio.to_thread(wait_rss, adapter)
        router.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wait_rss, router)
        return {
            "upload_mb_s": size / uploaded / 1e6,
            "uploaded": uploaded,
            "e2e_mb_s": size / delivered / 1e6,
            "delivered": delivered,
            "webhook_mb_s": size / posted / 1e6,
            "posted": posted,
            "adapter_rss": adapter_rss,
            "edge_rss": edge_rss,
        }
    finally:
        await hook_runner.cleanup()
        await admin.delete_vhost(vhost)


class Webhook:
    """csc's case system: reads each form's file parts through, keeps their sizes."""

    def __init__(self) -> None:
        self.files: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            await request.read()  # a receipt
            return web.Response(status=204)
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            size = 0
            while chunk := await part.read_chunk(MIB):
                size += len(chunk)
            if part.name == "attachment":
                self.files.append(size)
        return web.Response(status=204)


async def run(sizes: list[int]) -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    for mib in sizes:
        with tempfile.TemporaryDirectory(prefix="mash-bench-http-upload-") as tmp:
            r = await one_size(mib * MIB, Path(tmp))
        print(
            f"{mib} MiB: upload {r['upload_mb_s']:.0f} MB/s ({r['uploaded']:.1f} s to the 202), "
            f"end to end {r['e2e_mb_s']:.0f} MB/s ({r['delivered']:.1f} s); hub -> csc webhook "
            f"{r['webhook_mb_s']:.0f} MB/s ({r['posted']:.1f} s); peak RSS: "
            f"csc adapter {r['adapter_rss']:.0f} MiB, hub edge {r['edge_rss']:.0f} MiB",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, action="append", help="MiB (default 256 and 1024)")
    args = parser.parse_args()
    asyncio.run(run(args.size or [256, 1024]))


if __name__ == "__main__":
    main()
