"""Attachments benchmark: one large file from send to the receiving handler, beside bare aio-pika.

Run: .venv/bin/python bench/attachments.py [--size MiB] [--piece KiB] [--pieces-sweep]

On the local RabbitMQ, each part in a fresh vhost deleted afterwards, it prints
from one run:
- raw ceiling: bare aio-pika moving the same bytes through the same hops in the
  same piece size: a publisher (confirms, 8 in flight) into the gateway's
  quorum ``gateway.ingress.hub``, a relay process (manual acks, one piece at a time
  like the router, confirmed publish) into the quorum ``agency.police.inbox``,
  and a consumer that acks; nothing is encrypted, signed or written to disk;
- gateway: ``mash-gateway send --attach FILE`` (sender), ``mash-gateway run``
  (router) and ``mash-gateway inbox`` (receiving edge), each its own process,
  from the start of send until ``<message id>.xml`` appears in the inbox
  folder (written after the file, the handler's last step). Throughput is the
  file's size over that time; each process's peak RSS comes from wait4. When
  the sender exits (sealed, every piece confirmed on ingress) is printed
  too: what follows is the relay's backlog, the edge's staging and opening.
  Each process's CPU seconds (wait4) say what it costs whatever the load.
- ``--pieces-sweep`` runs only the raw ceiling at 256 KiB, 1 MiB and 4 MiB
  pieces: the measurements behind DEFAULT_PIECE_SIZE (pieces.py).

Targets (issue 13): gateway >= 50% of raw; each process's peak RSS <= 150 MiB
and the same for 1 GiB (default) and 5 GiB (``--size 5120``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from gateway.broker import topology
from gateway.broker.vhost import admin_for, vhost_url
from gateway.cli import main as cli
from gateway.core.resources import schemas_dir

BASE_URL = os.environ.get("MASH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MIB = 1024 * 1024
WINDOW = 8
REQUEST = schemas_dir() / "examples" / "valid" / "information-request.xml"


async def fresh_vhost() -> tuple[str, str]:
    admin = await admin_for(BASE_URL)
    vhost = f"mash-bench-{uuid.uuid4().hex[:8]}"
    await admin.create_vhost(vhost, "guest")
    return vhost_url(BASE_URL, vhost), vhost


async def drop_vhost(vhost: str) -> None:
    admin = await admin_for(BASE_URL)
    await admin.delete_vhost(vhost)


def wait_rss(process: subprocess.Popen[bytes]) -> float:
    """Wait for a child; its own peak RSS in MiB (ru_maxrss is KiB on Linux)."""
    return wait_usage(process)[0]


def wait_usage(process: subprocess.Popen[bytes]) -> tuple[float, float]:
    """Wait for a child; its peak RSS in MiB and the CPU seconds it used (user and system),
    which a loaded machine does not inflate as it does the wall clock."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


# --- raw ceiling --------------------------------------------------------------------------


async def raw_relay(url: str) -> None:
    """The relay process: gateway.ingress.hub -> agency.police.inbox, one piece at a time."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=32)
        deliver = await channel.get_exchange(topology.DELIVER_EXCHANGE)
        queue = await channel.get_queue(topology.ingress_queue("hub"))
        async with queue.iterator() as pieces:
            async for message in pieces:
                await deliver.publish(
                    aio_pika.Message(message.body, delivery_mode=DeliveryMode.PERSISTENT),
                    "police",
                    mandatory=True,
                )
                await message.ack()


async def raw_ceiling(size: int, piece: int) -> float:
    """MB/s of bare aio-pika over the same two queues and the relay hop."""
    url, vhost = await fresh_vhost()
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, ["police", "hub"], topology.Limits())
            relay = subprocess.Popen([sys.executable, __file__, "--raw-relay", url])
            try:
                ingress = await channel.get_exchange(topology.ingress_exchange("hub"))
                inbox = await channel.get_queue(topology.inbox_queue("police"))
                consumer_channel = await connection.channel()
                await consumer_channel.set_qos(prefetch_count=32)
                inbox = await consumer_channel.get_queue(topology.inbox_queue("police"))
                count = -(-size // piece)
                done = asyncio.Event()
                received = 0

                async def on_piece(message: AbstractIncomingMessage) -> None:
                    nonlocal received
                    received += 1
                    await message.ack()
                    if received == count:
                        done.set()

                await inbox.consume(on_piece)
                body = os.urandom(piece)
                slots = asyncio.Semaphore(WINDOW)

                async def send() -> None:
                    try:
                        await ingress.publish(
                            aio_pika.Message(body, delivery_mode=DeliveryMode.PERSISTENT),
                            topology.INGRESS_ROUTING_KEY,
                            mandatory=True,
                        )
                    finally:
                        slots.release()

                started = time.monotonic()
                tasks = []
                for _ in range(count):
                    await slots.acquire()
                    tasks.append(asyncio.create_task(send()))
                await asyncio.gather(*tasks)
                await done.wait()
                return size / (time.monotonic() - started) / 1e6
            finally:
                relay.send_signal(signal.SIGTERM)
                relay.wait(10)
    finally:
        await drop_vhost(vhost)


# --- the gateway --------------------------------------------------------------------------


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as out:
        left = size
        while left:
            out.write(block[: min(left, MIB)])
            left -= min(left, MIB)


async def gateway_run(size: int, work: Path) -> dict[str, float]:
    url, vhost = await fresh_vhost()
    try:
        area = work / "area"
        assert cli(["init", str(area), "--broker-url", url]) == 0
        config = str(area / "gateway.toml")
        attachment = work / "video.mp4"
        make_file(attachment, size)
        log = (work / "router.log").open("wb")
        gateway = [sys.executable, "-m", "gateway", "--config", config]
        router = subprocess.Popen([*gateway, "run"], stdout=log, stderr=log)
        while b"router.started" not in (work / "router.log").read_bytes():
            await asyncio.sleep(0.1)
        out = work / "inbox"
        inbox = subprocess.Popen(
            [*gateway, "inbox", "--as", "police", "--out", str(out), "--follow"],
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(2)  # the edge is consuming
        started = time.monotonic()
        send = ["send", "--as", "hub", "--to", "police", str(REQUEST), "--attach", str(attachment)]
        sender = subprocess.Popen(
            [*gateway, *send],
            stdout=subprocess.PIPE,
        )
        sender_rss, sender_cpu = await asyncio.to_thread(wait_usage, sender)
        sent = time.monotonic() - started  # sealed, and every piece confirmed on ingress
        assert sender.returncode == 0, "send failed"
        assert sender.stdout is not None
        message_id = sender.stdout.read().split()[2].decode()
        while not (out / f"{message_id}.xml").exists():
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        # `inbox --follow` does not stop on SIGINT (it hangs in shutdown, on main too);
        # its peak RSS stays in ru_maxrss whatever ends it.
        inbox.kill()
        edge_rss, edge_cpu = await asyncio.to_thread(wait_usage, inbox)
        router.send_signal(signal.SIGTERM)
        router_rss, router_cpu = await asyncio.to_thread(wait_usage, router)
        log.close()
        received = out / f"{message_id}.attachments" / "video.mp4"
        assert received.stat().st_size == size, "the file arrived cut"
        return {
            "mb_s": size / elapsed / 1e6,
            "seconds": elapsed,
            "sent_s": sent,
            "sender_rss": sender_rss,
            "router_rss": router_rss,
            "edge_rss": edge_rss,
            "sender_cpu": sender_cpu,
            "router_cpu": router_cpu,
            "edge_cpu": edge_cpu,
        }
    finally:
        await drop_vhost(vhost)


async def run(args: argparse.Namespace) -> None:
    size = args.size * MIB
    piece = args.piece * 1024
    if args.pieces_sweep:
        for kib in (256, 1024, 4096):
            mb_s = await raw_ceiling(size, kib * 1024)
            print(f"raw ceiling, {kib} KiB pieces, {args.size} MiB: {mb_s:.0f} MB/s", flush=True)
        return
    raw = await raw_ceiling(size, piece)
    print(f"raw ceiling ({args.piece} KiB pieces): {raw:.0f} MB/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="mash-bench-attachments-") as tmp:
        result = await gateway_run(size, Path(tmp))
    print(
        f"gateway, {args.size} MiB send -> handler: {result['mb_s']:.0f} MB/s "
        f"({result['seconds']:.1f} s, the sender done after {result['sent_s']:.1f} s), "
        f"{result['mb_s'] / raw:.0%} of raw"
    )
    print(
        f"peak RSS: sender {result['sender_rss']:.0f} MiB, router {result['router_rss']:.0f} MiB, "
        f"receiving edge {result['edge_rss']:.0f} MiB"
    )
    print(
        f"CPU: sender {result['sender_cpu']:.1f} s, router {result['router_cpu']:.1f} s, "
        f"receiving edge {result['edge_cpu']:.1f} s (each process's whole life)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB (default 1024; 5120 for 5 GiB)")
    parser.add_argument("--piece", type=int, default=1024, help="KiB per piece for the raw run")
    parser.add_argument("--pieces-sweep", action="store_true")
    parser.add_argument("--raw-relay", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_relay:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # no teardown: it only relays
        asyncio.run(raw_relay(args.raw_relay))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
