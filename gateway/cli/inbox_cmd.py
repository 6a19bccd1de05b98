"""`mash-gateway inbox`: take an agency's messages into a folder, with receipts.

Each message is written as ``<message id>.xml`` by temp file, fsync and
rename, so a reader never sees half a file and a redelivery never writes
twice; the receipt is sent only after the file is durable. Its attachments
go first, into ``<message id>.attachments/`` under the names the payload
gives them (checked safe), made as a hidden folder and renamed whole: the
XML appears last, so a folder watcher that reacts to it finds every file. Without
``--follow`` it stops once the inbox has been idle for ``--idle`` seconds; with
it, on SIGINT or SIGTERM, after the message in hand is written and receipted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import AreaConfig, load_config
from gateway.infra.atomic import atomic_writer
from gateway.services.edge import Delivered, Edge
from gateway.services.transfer_staging import write_attachments
from gateway.store import opened_store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("inbox", help="receive an agency's messages into a folder")
    parser.add_argument("--as", dest="agency", required=True, metavar="AGENCY")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--follow", action="store_true", help="keep running until interrupted")
    parser.add_argument(
        "--idle",
        type=float,
        default=2.0,
        help="without --follow, stop after this many idle seconds",
    )
    parser.set_defaults(handler=run)


class FolderWriter:
    """The agency system for the CLI: a folder of files named by message id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.last_activity = time.monotonic()
        self.received: list[Delivered] = []

    async def __call__(self, delivered: Delivered) -> None:
        self.last_activity = time.monotonic()
        target = self.folder / f"{delivered.header.fields.message_id}.xml"
        if not target.exists():
            if delivered.attachments:
                await asyncio.to_thread(write_attachments, target, delivered.attachments)
            await asyncio.to_thread(self._write, target, delivered.payload)
        self.received.append(delivered)
        fields = delivered.header.fields
        print(
            f"received {fields.message_type} {fields.message_id} from {fields.sender} "
            f"(case {fields.correlation_id}) -> {target}",
            flush=True,
        )

    @staticmethod
    def _write(target: Path, payload: bytes) -> None:
        with atomic_writer(target) as out:
            out.write(payload)


async def receive(
    config: AreaConfig, agency: str, folder: Path, follow: bool, idle: float
) -> list[Delivered]:
    folder.mkdir(parents=True, exist_ok=True)
    writer = FolderWriter(folder)
    stop = stop_on_signals()
    async with opened_store(config.store_url) as store, Edge(config, agency, store) as edge:
        await edge.consume(writer, takes_attachments=True)
        if follow:
            print(f"receiving for {agency} into {folder}; Ctrl-C to stop", flush=True)
        while not stop.is_set() and (
            follow or time.monotonic() - max(writer.last_activity, edge.last_received) < idle
        ):
            await asyncio.sleep(0.1)
    return writer.received


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    received = asyncio.run(receive(config, args.agency, args.out, args.follow, args.idle))
    print(f"{len(received)} message(s) received into {args.out}")
    return 0
