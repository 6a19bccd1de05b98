"""File drop: the agency system exports into a folder and reads what we write into another.

Layout under the adapter's root::

    outbox/      the agency system drops native files here
    processing/  a file claimed by this adapter (atomic rename)
    archive/     sent: the file, and ``<file>.sent`` listing its message ids; deleted
                 ``archive_days`` after they were written (checked hourly)
    error/       refused: the file, and ``<file>.reason`` saying why (file, line, field)
    inbox/       messages for the agency: ``<message id>.json`` then ``<message id>.xml``

Pick-up rule (how a half-written file is never read): only names matching
the profile's patterns (``*.xml``, ``*.csv``) that do not start with a dot
are picked up, so the agency system writes ``name.tmp`` (or ``.name.xml``)
and renames it when complete; a rename within a folder is atomic.

A claimed file is renamed to ``<UTC time>-<random>--<name>`` so two files
dropped with the same name never overwrite each other anywhere. Files left
in processing/ by a crash are taken again at start: the ledger knows which
of their documents were already sent, so none is sent twice. A file whose
content was already sent (dropped twice) goes to error/ naming the earlier
message ids.

archive/ is pruned because its files are personal data the exchange
already carries: they are kept only long enough to trace a file to its
message ids (storage limitation). error/ is never pruned: a person must act
on each file there.

Outbound, each message is written by temp file, fsync and rename (and the
folder fsynced), named by message id, so a redelivery never writes twice;
the header facts (ids, types, agencies; no personal data) go first into
``<id>.json``, then the payload into ``<id>.xml``, which the agency system
takes as the sign that both are complete. The edge sends the receipt only
after both are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import structlog

from adapters.inbound import Intake, Reply, digest_of, failed
from adapters.prepare import Refused
from adapters.profile import Profile
from adapters.transports.durable import fsync_dir, move, write_text
from gateway.config.adapter_config import FileDropSettings
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services.edge import Delivered

log = structlog.get_logger("adapters.filedrop")

TRANSPORT = "filedrop"
FOLDERS = ("outbox", "processing", "archive", "error", "inbox")
CLAIM_SEPARATOR = "--"
WORKERS = 16  # files in hand at once
CLAIM_BATCH = 256  # files claimed per pass, so sending starts soon after a big drop
PRUNE_EVERY_S = 3600.0
DAY_S = 86400.0


def folders(root: Path) -> dict[str, Path]:
    return {name: root / name for name in FOLDERS}


def make_folders(root: Path) -> None:
    for path in folders(root).values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


def picked_up(name: str, patterns: tuple[str, ...]) -> bool:
    return not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def original_name(claimed: str) -> str:
    return claimed.split(CLAIM_SEPARATOR, 1)[-1]


def expired(entries: Iterable[tuple[str, float]], now: float, keep_days: float) -> list[str]:
    """The names, of (name, modified at) in epoch seconds, kept longer than ``keep_days``."""
    cutoff = now - keep_days * DAY_S
    return sorted(name for name, modified in entries if modified < cutoff)


class FileDropInbound:
    """Claims files from outbox/, sends them through the intake, files them away.

    Up to WORKERS files are in hand at once, so one slow file (or fsync)
    never holds up the rest; files are independent messages, so their order
    is not kept. Two files with the same content are taken one after the
    other (a lock per digest), so the second is always seen as a repeat.
    """

    def __init__(self, settings: FileDropSettings, intake: Intake) -> None:
        self.settings = settings
        self.intake = intake
        self.dirs = folders(settings.root)
        make_folders(settings.root)
        self._same_content = KeyedLocks()

    async def start(self) -> None:
        """Folders are made in the constructor; a claimed file is resumed in ``run``."""

    async def run(self, stop: asyncio.Event) -> None:
        await self.recover()
        pruned_at = -PRUNE_EVERY_S
        while not stop.is_set():
            if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                await asyncio.to_thread(self.prune_archive, utc_now().timestamp())
                pruned_at = time.monotonic()
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)

    def prune_archive(self, now: float) -> int:
        """Delete what archive/ has kept past ``archive_days``; how many files."""
        archive = self.dirs["archive"]
        with os.scandir(archive) as entries:
            stamped = [(e.name, e.stat().st_mtime) for e in entries if e.is_file()]
        names = expired(stamped, now, self.settings.archive_days)
        for name in names:
            (archive / name).unlink(missing_ok=True)
        if names:
            fsync_dir(archive)
            log.info("archive.pruned", agency=self.intake.agency, files=len(names))
        return len(names)

    async def recover(self) -> None:
        """Finish files a previous run claimed but did not file away."""
        await self._process_all(sorted(self.dirs["processing"].iterdir()), resuming=True)

    async def poll_once(self) -> int:
        """Claim and process the complete files in outbox/ (at most CLAIM_BATCH); how many."""
        claimed = await asyncio.to_thread(self._claim_batch)
        await self._process_all(claimed, resuming=False)
        return len(claimed)

    def _claim_batch(self) -> list[Path]:
        names = sorted(os.listdir(self.dirs["outbox"]))
        ready = [n for n in names if picked_up(n, self.intake.profile.patterns)][:CLAIM_BATCH]
        claimed = [c for c in (self._claim(n) for n in ready) if c is not None]
        if claimed:  # the claims are durable before anything is sent
            fsync_dir(self.dirs["processing"])
            fsync_dir(self.dirs["outbox"])
        return claimed

    def _claim(self, name: str) -> Path | None:
        stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
        target = self.dirs["processing"] / f"{stamp}-{uuid.uuid4().hex[:8]}{CLAIM_SEPARATOR}{name}"
        try:
            os.rename(self.dirs["outbox"] / name, target)
        except FileNotFoundError:
            return None  # another adapter process claimed it first
        return target

    async def _process_all(self, paths: list[Path], resuming: bool) -> None:
        workers = asyncio.Semaphore(WORKERS)

        async def one(path: Path) -> None:
            async with workers:
                await self.process(path, resuming)

        await asyncio.gather(*(one(p) for p in paths))

    async def process(self, path: Path, resuming: bool) -> None:
        source = original_name(path.name)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            reason = f"{source}: cannot read: {exc.strerror}"
            await self._refuse(path, Refused("read", reason, "read"))
            return
        digest = digest_of(data)
        key = f"file:{digest}"
        async with self._same_content.hold(key):
            earlier = await self.intake.sent(key)
            if earlier is not None and not resuming:
                reason = (
                    f"{source}: the same content was already sent from {earlier.source} "
                    f"as message(s) {', '.join(earlier.message_ids)}; not sent again"
                )
                await self._refuse(path, Refused("duplicate", reason, "duplicate"))
                return
            try:
                documents = self.intake.prepare(data, source)
                ids = await self.intake.send(documents, key, digest, source, Reply())
            except Refused as refused:
                await self._refuse(path, refused)
                return
        await asyncio.to_thread(self._archive, path, ids)
        log.info(
            "file.sent",
            agency=self.intake.agency,
            file_sha256=digest[:16],
            messages=len(ids),
            message_ids=list(ids),
        )

    def _archive(self, path: Path, ids: tuple[str, ...]) -> None:
        write_text(self.dirs["archive"] / f"{path.name}.sent", "\n".join(ids) + "\n")
        move(path, self.dirs["archive"])

    async def _refuse(self, path: Path, refused: Refused) -> None:
        await asyncio.to_thread(self._file_error, path, refused.reason)
        failed(self.intake.agency, TRANSPORT, refused.stage)
        log.warning("file.refused", agency=self.intake.agency, stage=refused.stage)

    def _file_error(self, path: Path, reason: str) -> None:
        """The reason first, then the file: a file in error/ always has its reason beside it."""
        write_text(self.dirs["error"] / f"{path.name}.reason", reason + "\n")
        move(path, self.dirs["error"])


class FileDropOutbound:
    """The edge's handler: writes each delivered message into inbox/, durably, once."""

    def __init__(self, settings: FileDropSettings, profile: Profile) -> None:
        self.inbox = folders(settings.root)["inbox"]
        self.profile = profile
        make_folders(settings.root)

    async def __call__(self, delivered: Delivered) -> None:
        await asyncio.to_thread(self._write, delivered)

    def _write(self, delivered: Delivered) -> None:
        fields = delivered.header.fields
        payload_path = self.inbox / f"{fields.message_id}.xml"
        if payload_path.exists():
            return  # written before a crash that came ahead of the edge's record
        native = self.profile.to_native(delivered.payload, f"message {fields.message_id}")
        facts = {
            "message_id": fields.message_id,
            "correlation_id": fields.correlation_id,
            "in_reply_to": fields.in_reply_to,
            "message_type": fields.message_type,
            "sender": fields.sender,
            "recipients": list(fields.recipients),
            "created_at": fields.created_at.isoformat(),
            "rag": fields.rag,
            "deadline": fields.deadline.isoformat() if fields.deadline else None,
            "plaintext_sha256": delivered.plaintext_sha256,
        }
        write_text(self.inbox / f"{fields.message_id}.json", json.dumps(facts, indent=2) + "\n")
        with atomic_writer(payload_path) as out:
            out.write(native)
