"""MESH: poll the adapter's mailbox for inbound, send to the agency system's mailbox for outbound.

Uses the official ``mesh-client`` (blocking, so every call runs in a
thread of the transport's own, one per client: a MESH round trip never
holds up the ledger and file work on asyncio's default threads), with
MESH's own chunking both ways. Up to IN_HAND messages are in hand at once
(downloaded, on their way through the exchange, or being acknowledged), so
MESH's round trips and the exchange's confirms of one message overlap those
of the others; each MESH call takes one of CLIENTS clients for its length.
Outbound sends have SENDERS clients of their own, so a long download never
holds them up.

Layout under ``root``::

    processing/  scratch: a message being downloaded or unpacked, a ZIP being built
                 (emptied at start: MESH still holds whatever was in hand)
    archive/     received and sent on: ``<MESH id>.dat`` and ``.sent`` (our message ids);
                 a non-delivery report we acted on, with ``.report``; deleted
                 ``archive_days`` after they were written (checked at start and hourly)
    error/       refused: ``<MESH id>.dat`` and ``.reason``; never pruned
    pending/     ``<message id>.json``: sent, accepted by MESH, not yet downloaded by the
                 agency's mailbox (ids, times and digests only)

Inbound, for each message in the mailbox:
1. it is streamed to ``processing/`` (never held in memory), cut off past
   ``[limits] max_total`` plus the largest document. MESH keeps it until
   step 4, so this copy need not be durable;
2. a ZIP (see "Attachments") is unpacked there; the document is mapped,
   checked and submitted through the intake with its files, which records
   the message ids in the ledger under ``mesh:<MESH id>`` once the broker
   has confirmed them;
3. it is renamed into ``archive/`` with its ``.sent``: a copy for tracing,
   written without fsyncs of its own (see ``MeshInbound._archive``);
4. only then is the MESH message acknowledged. A crash before the
   acknowledgement leaves it in the mailbox: the next poll downloads it
   again, the ledger recognises it, and it is acknowledged without being
   sent twice. A failure that is not the document's fault (broker down)
   leaves it unacknowledged for the next poll.

A poll that took a message lists the mailbox again at once (the page MESH
lists holds at most 500, and more may have come meanwhile); one that found
nothing new, or after a message failed, waits ``poll_seconds``.

A message the adapter refuses (unmappable, over a limit, a bad ZIP) goes to
``error/`` with its ``.reason`` and is never acknowledged: MESH's tracking
must not show the sending trust a success. MESH has no "reject", so it stays
in the mailbox, skipped by every later poll (its ``.reason`` in error/ says
it was refused), until MESH expires it and sends the trust its own
non-delivery report.

Outbound, each message for the agency is sent to ``recipient`` with the
workflow id configured for its type, ``local_id`` = our message id and
``subject`` = its type, and the MESH id is recorded under ``mesh-out:<message
id>``, so a redelivery is not sent again. Delivery has two states:
- accepted by MESH: the send returned. The handler writes
  ``pending/<message id>.json`` and returns; the edge records the hand-over
  and acks, but sends no receipt (``Edge.consume(..., receipts_later=True)``),
  so the message stays ``routed`` and the recipient's delivery deadline stays
  open (and escalates) while MESH holds it;
- delivered: MESH tracking (``track_message``, every ``track_seconds``) says
  the agency's mailbox has downloaded and acknowledged it. Only then is the
  positive receipt sent (``Edge.receipt_later``), and the pending file removed.

A MESH non-delivery report (a ``REPORT`` in our mailbox whose ``local_id``
is a pending message of ours, e.g. the agency's system did not collect it in
5 days), or tracking that says ``undeliverable`` or ``error``, becomes a
negative receipt with check ``handler`` naming MESH's status
(``Edge.refuse_later``): the router marks the message rejected, ends the
deadlines it opened as not met and forwards the receipt to the sender, which
is how the exchange tells a sender that an adapter could not deliver (as for
a webhook that stays down). The report is filed in ``archive/`` with a
``.report`` note. A report about nothing pending goes to ``error/``.

Attachments travel as one MESH message, a ZIP (``application/zip``,
``<message id>.zip``) holding the document at the top (``<message id>.xml``
outbound; inbound the one member matching the profile's patterns) and its
files under ``attachments/`` with their bare names. Stored, not compressed
(documents, scans and videos are compressed already), so it is written and
read as a stream: outbound the ZIP is built in ``processing/`` from the
edge's staged files and handed to mesh-client as a file, which sends it in
``max_chunk_size`` chunks; inbound the chunks are streamed to disk and each
member extracted by streaming. Sizes and names are checked against
``[limits]`` and the safe-name rule from the ZIP's directory before a member
is extracted. Memory: one MESH chunk a send in flight (mesh-client reads a
chunk after the first whole, so it can retry it; SENDERS at most), a copy
buffer a download; never a whole file. MESH's own limits: 100 MB a chunk, 20 GB a message.

The daily handshake MESH asks of every client runs at start (bad
credentials fail there) and every 24 hours.

Secrets: ``<private keys>/mesh/<agency>.password`` and ``.shared-key``, 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import structlog
from mesh_client import MeshClient, Message

from adapters.inbound import Intake, Reply, failed
from adapters.ledger import Ledger
from adapters.prepare import Prepared, Refused
from adapters.profile import Profile
from adapters.transports.durable import ArchivePruner, move, write_text
from adapters.transports.filedrop import picked_up
from gateway.broker.credentials import CredentialsError, kept_password
from gateway.config.adapter_config import MeshSettings
from gateway.core.attachments import (
    AttachmentLimits,
    AttachmentRefused,
    check_file_name,
    check_limits,
    check_unique_names,
)
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES
from gateway.core.xmlsafe import MAX_DOCUMENT_BYTES
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services.edge import Delivered, Receipting
from gateway.services.transfer_sender import AttachmentFile
from gateway.services.transfer_staging import ReceivedAttachment

log = structlog.get_logger("adapters.mesh")
T = TypeVar("T")

TRANSPORT = "mesh"
FOLDERS = ("processing", "archive", "error", "pending")
IN_HAND = 16  # messages in hand at once, from download to acknowledgement
CLIENTS = 4  # inbound MESH clients: downloads, acknowledgements, lists and tracking at once
SENDERS = 4  # outbound MESH clients: sends at once
COPY_BUFFER = 1024 * 1024
HANDSHAKE_EVERY_S = 86400.0  # MESH asks every client to handshake daily
ZIP_TYPE = "application/zip"
ATTACHMENTS_PREFIX = "attachments/"
ZIP_OVERHEAD = 1024 * 1024  # headers and directory of a ZIP of up to 100 files, and more
DELIVERED = frozenset({"acknowledged"})  # MESH tracking: the recipient downloaded it
UNDELIVERED = frozenset({"undeliverable", "error"})
UNDELIVERED_CHECK = "handler"  # the FailedCheck of the negative receipt


def secret_files(private_keys_dir: Path, agency: str) -> tuple[Path, Path]:
    folder = private_keys_dir / "mesh"
    return folder / f"{agency}.password", folder / f"{agency}.shared-key"


def mesh_client(settings: MeshSettings, private_keys_dir: Path, agency: str) -> MeshClient:
    password_path, key_path = secret_files(private_keys_dir, agency)
    password, shared_key = kept_password(password_path), kept_password(key_path)
    if password is None or shared_key is None:
        missing = password_path if password is None else key_path
        raise CredentialsError(f"{missing}: missing; write the MESH secret there (mode 0600)")
    cert = (str(settings.cert), str(settings.key)) if settings.cert and settings.key else None
    return MeshClient(
        settings.url,
        settings.mailbox,
        password,
        shared_key=shared_key.encode("utf-8"),
        cert=cert,
        verify=str(settings.ca) if settings.ca else None,
        max_chunk_size=settings.max_chunk_size,
        application_name="mash-gateway",
    )


def make_folders(root: Path) -> dict[str, Path]:
    dirs = {name: root / name for name in FOLDERS}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return dirs


@dataclass(frozen=True)
class Accepted:
    """A message MESH has accepted from us and the agency's mailbox has not yet downloaded."""

    mesh_id: str
    accepted_at: datetime
    receipting: Receipting


class Pending:
    """``pending/<message id>.json``, one per message accepted by MESH and not yet downloaded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, message_id: str) -> Path | None:
        """The file of ``message_id``, if it is a message id at all (a report says it)."""
        try:
            canonical = str(uuid.UUID(message_id))
        except ValueError:
            return None
        return self.folder / f"{canonical}.json" if canonical == message_id else None

    def add(self, accepted: Accepted) -> None:
        path = self._path(accepted.receipting.message_id)
        if path is None:
            raise ValueError(f"not a message id: {accepted.receipting.message_id!r}")
        about = asdict(accepted.receipting)
        about["received_at"] = accepted.receipting.received_at.isoformat()
        record = {
            "mesh_id": accepted.mesh_id,
            "accepted_at": accepted.accepted_at.isoformat(),
            "receipting": about,
        }
        write_text(path, json.dumps(record, indent=1))

    def get(self, message_id: str) -> Accepted | None:
        path = self._path(message_id)
        if path is None:
            return None
        try:
            record = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        about = dict(record["receipting"])
        about["received_at"] = datetime.fromisoformat(about["received_at"])
        about["attachments"] = tuple(tuple(pair) for pair in about["attachments"])
        return Accepted(
            record["mesh_id"], datetime.fromisoformat(record["accepted_at"]), Receipting(**about)
        )

    def message_ids(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json"))

    def remove(self, message_id: str) -> None:
        path = self._path(message_id)
        if path is not None:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Report:
    """A MESH non-delivery report: which message, and what MESH says happened (ids only)."""

    linked_mesh_id: str | None
    local_id: str | None
    text: str


@dataclass(frozen=True)
class Downloaded:
    mesh_id: str
    path: Path  # processing/<MESH id>.dat, as MESH sent it (cut off past the limit)
    size: int
    sha256: str
    complete: bool
    report: Report | None

    @property
    def source(self) -> str:
        return f"MESH message {self.mesh_id}"


class MeshInbound:
    """Polls the mailbox and MESH tracking; IN_HAND messages are in hand at once.

    A MESH client is not shared between threads (its auth nonce counter is
    not thread-safe), so each MESH call takes one from a pool of CLIENTS and
    gives it back when it returns: a message waiting on the exchange holds
    none.
    """

    def __init__(self, settings: MeshSettings, intake: Intake) -> None:
        self.settings = settings
        self.intake = intake
        self.dirs = make_folders(settings.root)
        self.pending = Pending(self.dirs["pending"])
        self.limits: AttachmentLimits = intake.edge.config.limits
        self.largest = self.limits.max_total_bytes + MAX_DOCUMENT_BYTES + ZIP_OVERHEAD
        keys = intake.edge.config.private_keys_dir
        self.clients = [mesh_client(settings, keys, intake.agency) for _ in range(CLIENTS)]
        self._idle: asyncio.Queue[MeshClient] = asyncio.Queue()
        for client in self.clients:
            self._idle.put_nowait(client)
        self._threads = ThreadPoolExecutor(CLIENTS, thread_name_prefix=f"mesh-{intake.agency}")
        self._slots = asyncio.Semaphore(IN_HAND)
        self._in_hand: set[str] = set()
        # Acknowledged since the last list was asked for: that list may still show them.
        self._acknowledged: set[str] = set()
        self._failed = False  # a message was left unacknowledged since the last poll
        self._tasks: set[asyncio.Task[None]] = set()
        self._settling = KeyedLocks()  # a report and tracking never settle one message twice
        self._handshaken_at = -HANDSHAKE_EVERY_S
        self._tracked_at = -settings.track_seconds
        self._pruner = ArchivePruner(
            self.dirs["archive"], settings.archive_days, intake.agency, TRANSPORT
        )

    async def start(self) -> None:
        await asyncio.to_thread(self._clear_processing)
        await self.handshake()  # bad credentials fail at start

    def _clear_processing(self) -> None:
        """What a previous run had in hand: MESH still holds it, or the edge redelivers it."""
        for entry in self.dirs["processing"].iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    async def _call(self, call: Callable[[MeshClient], T]) -> T:
        """``call`` with an idle client, in one of our threads; the client is idle again after."""
        client = await self._idle.get()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, call, client)
        finally:
            self._idle.put_nowait(client)

    async def handshake(self) -> None:
        await self._call(MeshClient.handshake)
        self._handshaken_at = time.monotonic()
        log.info("mesh.handshake", agency=self.intake.agency, mailbox=self.settings.mailbox)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._pruner.when_due()
            taken = 0
            try:
                if time.monotonic() - self._handshaken_at >= HANDSHAKE_EVERY_S:
                    await self.handshake()
                taken = await self.poll_once()
                if time.monotonic() - self._tracked_at >= self.settings.track_seconds:
                    await self.track_once()
            except Exception:  # MESH or broker unreachable: try again next poll
                log.exception("mesh.poll_failed", agency=self.intake.agency)
                failed(self.intake.agency, TRANSPORT, "poll")
                taken = 0
            if taken and not self._failed:
                continue  # more may be waiting: list again at once
            self._failed = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for client in self.clients:
            await asyncio.to_thread(client.close)
        self._threads.shutdown(wait=False)

    async def poll_once(self) -> int:
        """Start taking every message now in the mailbox that is not in hand or refused;
        returns once the last of them is in hand (at most IN_HAND at once)."""
        self._acknowledged = set()
        mesh_ids = await self._call(MeshClient.list_messages)
        fresh = [
            m
            for m in mesh_ids
            if m not in self._in_hand and m not in self._acknowledged and not self._refused(m)
        ]
        self._in_hand.update(fresh)
        for mesh_id in fresh:
            await self._slots.acquire()
            task = asyncio.create_task(self._take_one(mesh_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(fresh)

    def _refused(self, mesh_id: str) -> bool:
        """Refused before: left unacknowledged for MESH to expire, never taken again."""
        return (self.dirs["error"] / f"{mesh_id}.dat.reason").exists()

    async def _take_one(self, mesh_id: str) -> None:
        try:
            downloaded = await self._call(lambda client: self._download(client, mesh_id))
            if await self._take(downloaded):
                await self._call(lambda client: client.acknowledge_message(mesh_id))
                self._acknowledged.add(mesh_id)
        except Exception:  # left unacknowledged in MESH: the next poll takes it again
            self._failed = True
            log.exception("mesh.take_failed", agency=self.intake.agency, mesh_id=mesh_id)
            failed(self.intake.agency, TRANSPORT, "take")
        finally:
            self._in_hand.discard(mesh_id)
            self._slots.release()

    def _download(self, client: MeshClient, mesh_id: str) -> Downloaded:
        """Stream the message (its chunks in turn) to processing/; stop past the limit.

        The copy need not be durable yet: MESH keeps the message until we
        acknowledge, which happens only after it is sent on.
        """
        digest = hashlib.sha256()
        size, complete = 0, True
        target = self.dirs["processing"] / f"{mesh_id}.dat"
        # Not ``with message``: its exit acknowledges, and we acknowledge only once sent on.
        message = client.retrieve_message(mesh_id)
        try:
            report = _report(message)
            with target.open("wb") as out:
                while block := message.read(COPY_BUFFER):
                    size += len(block)
                    if size > self.largest:
                        complete = False
                        break
                    digest.update(block)
                    out.write(block)
        finally:
            message.close()  # type: ignore[no-untyped-call]
        return Downloaded(mesh_id, target, size, digest.hexdigest(), complete, report)

    async def _take(self, downloaded: Downloaded) -> bool:
        """Send it on, or refuse it; True when MESH may be told we have it (acknowledged)."""
        if downloaded.report is not None:
            return await self._settle_report(downloaded, downloaded.report)
        source = downloaded.source
        files = self.dirs["processing"] / f"{downloaded.mesh_id}.attachments"
        try:
            if not downloaded.complete:
                reason = f"{source}: over the {self.largest}-byte limit (cut off there)"
                raise Refused("read", reason, "too-large")
            documents, attached = await asyncio.to_thread(self._unpack, downloaded, files)
            key = f"mesh:{downloaded.mesh_id}"
            ids = await self.intake.send(
                documents, key, downloaded.sha256, source, Reply(), attached
            )
        except Refused as refused:
            await self._refuse(downloaded, refused)
            return False
        finally:
            if files.exists():  # a ZIP's files, unpacked
                await asyncio.to_thread(shutil.rmtree, files, True)
        await asyncio.to_thread(self._archive, downloaded, ".sent", "\n".join(ids))
        log.info(
            "mesh.sent",
            agency=self.intake.agency,
            mesh_id=downloaded.mesh_id,
            messages=ids,
            attachments=len(attached),
        )
        return True

    def _unpack(
        self, downloaded: Downloaded, folder: Path
    ) -> tuple[list[Prepared], tuple[AttachmentFile, ...]]:
        """The document, mapped and checked, and its files extracted to ``folder`` (a ZIP's)."""
        source = downloaded.source
        if not zipfile.is_zipfile(downloaded.path):
            if downloaded.size > MAX_DOCUMENT_BYTES:
                reason = (
                    f"{source}: {downloaded.size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
                )
                raise Refused("read", reason, "too-large")
            return self.intake.prepare(downloaded.path.read_bytes(), source), ()
        try:
            with zipfile.ZipFile(downloaded.path) as archive:
                document, members = _members(archive, self.intake.profile.patterns, source)
                try:
                    check_limits([(name, m.file_size) for name, m in members], self.limits)
                except AttachmentRefused as exc:
                    raise Refused("limit", f"{source}: {exc}", "limit") from None
                if document.file_size > MAX_DOCUMENT_BYTES:
                    reason = (
                        f"{source}: {document.filename} is {document.file_size} bytes, "
                        f"over the {MAX_DOCUMENT_BYTES}-byte limit"
                    )
                    raise Refused("read", reason, "too-large")
                documents = self.intake.prepare(
                    archive.read(document), f"{source}: {document.filename}"
                )
                folder.mkdir(mode=0o700)
                for name, member in members:
                    with archive.open(member) as data, (folder / name).open("xb") as out:
                        shutil.copyfileobj(data, out, COPY_BUFFER)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise Refused("read", f"{source}: not a readable ZIP: {exc}", "bad-zip") from None
        return documents, tuple(AttachmentFile(folder / name) for name, _ in members)

    async def _settle_report(self, downloaded: Downloaded, report: Report) -> bool:
        """A non-delivery report about a pending message of ours: its negative receipt."""
        message_id = report.local_id or ""
        async with self._settling.hold(message_id):
            accepted = await asyncio.to_thread(self.pending.get, message_id)
            if accepted is None or report.linked_mesh_id not in (None, accepted.mesh_id):
                await self._refuse(downloaded, Refused("mesh-report", report.text, "report"))
                return True  # nothing of ours is waiting on it: a person looks at error/
            await self._undelivered(accepted, report.text)
        note = f"{report.text}\nnegative receipt sent to {accepted.receipting.sender}"
        await asyncio.to_thread(self._archive, downloaded, ".report", note)
        return True

    async def track_once(self) -> int:
        """Ask MESH tracking about every pending message; receipt the ones downloaded."""
        self._tracked_at = time.monotonic()
        settled = 0
        for message_id in await asyncio.to_thread(self.pending.message_ids):
            async with self._settling.hold(message_id):
                accepted = await asyncio.to_thread(self.pending.get, message_id)
                try:
                    if accepted is not None and await self._track(accepted):
                        settled += 1
                except Exception:  # asked again next round; the others are not held up
                    log.exception("mesh.track_failed", agency=self.intake.agency)
                    failed(self.intake.agency, TRANSPORT, "track")
        return settled

    async def _track(self, accepted: Accepted) -> bool:
        tracking = await self._call(lambda client: client.track_message(accepted.mesh_id))
        status = str(tracking.get("status") or "").lower()
        about = accepted.receipting
        if status in DELIVERED:
            await self.intake.edge.receipt_later(about, utc_now())
            await asyncio.to_thread(self.pending.remove, about.message_id)
            log.info(
                "mesh.downloaded",
                agency=self.intake.agency,
                message_id=about.message_id,
                mesh_id=accepted.mesh_id,
            )
            return True
        if status in UNDELIVERED:
            said = " ".join(
                str(tracking.get(k) or "") for k in ("status_code", "status_description")
            )
            reason = f"MESH tracking of message {accepted.mesh_id}: {status} {said}".rstrip()
            await self._undelivered(accepted, reason)
            return True
        return False

    async def _undelivered(self, accepted: Accepted, reason: str) -> None:
        about = accepted.receipting
        await self.intake.edge.refuse_later(about, UNDELIVERED_CHECK, reason, utc_now())
        await asyncio.to_thread(self.pending.remove, about.message_id)
        failed(self.intake.agency, TRANSPORT, "undelivered")
        log.warning(
            "mesh.undelivered",
            agency=self.intake.agency,
            message_id=about.message_id,
            mesh_id=accepted.mesh_id,
        )

    async def _refuse(self, downloaded: Downloaded, refused: Refused) -> None:
        await asyncio.to_thread(self._error, downloaded, refused.reason)
        failed(self.intake.agency, TRANSPORT, refused.stage)
        log.warning(
            "mesh.refused",
            agency=self.intake.agency,
            mesh_id=downloaded.mesh_id,
            stage=refused.stage,
        )

    def _error(self, downloaded: Downloaded, reason: str) -> None:
        """``<MESH id>.dat`` and its ``.reason`` into error/, durably: the reason last, since
        it is what later polls look for (a refused message is never acknowledged)."""
        target = move(downloaded.path, self.dirs["error"])
        write_text(target.with_name(target.name + ".reason"), reason + "\n")

    def _archive(self, downloaded: Downloaded, suffix: str, note: str) -> None:
        """``<MESH id>.dat`` and its note into archive/, for tracing only, without fsyncs.

        Nothing relies on this copy surviving a crash: the hand-over is safe
        before it (the broker confirmed the messages and the ledger, which
        commits with ``synchronous=FULL``, holds their ids under the MESH id),
        and MESH is acknowledged after it. A crash that loses the rename or
        the note loses a trace the ledger still holds (the MESH id, digest
        and message ids); processing/ is emptied at start. Four fsyncs a
        message fewer, on the way to the acknowledgement.
        """
        target = self.dirs["archive"] / downloaded.path.name
        os.rename(downloaded.path, target)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with open(os.open(target.with_name(target.name + suffix), flags, 0o600), "w") as out:
            out.write(note + "\n")


def _report(message: Message) -> Report | None:
    """What a MESH ``REPORT`` says, ids and MESH's status only; None for a DATA message."""
    if str(message.message_type or "DATA").upper() != "REPORT":
        return None
    header = message.mex_header
    linked = header("linkedmsgid")
    local_id = message.local_id
    text = (
        f"MESH report for message {linked or '?'} (our message {local_id or '?'}): status "
        f"{header('statuscode', '?')} {header('statusdescription', '')}".rstrip()
    )
    return Report(linked, local_id, text)


def _members(
    archive: zipfile.ZipFile, patterns: tuple[str, ...], source: str
) -> tuple[zipfile.ZipInfo, list[tuple[str, zipfile.ZipInfo]]]:
    """The one document at the top of the ZIP, and each file under attachments/ by its name."""
    documents, files = [], []
    for member in archive.infolist():
        if member.is_dir():
            continue
        name = member.filename
        if "/" not in name and picked_up(name, patterns):
            documents.append(member)
        elif name.startswith(ATTACHMENTS_PREFIX):
            try:
                files.append((check_file_name(name.removeprefix(ATTACHMENTS_PREFIX)), member))
            except AttachmentRefused as exc:
                raise Refused("attachment", f"{source}: {exc}", "attachment-name") from None
        else:
            reason = (
                f"{source}: ZIP member {name!r} is neither the document "
                f"({', '.join(patterns)}) nor a file under {ATTACHMENTS_PREFIX}"
            )
            raise Refused("mapping", reason, "zip-member")
    if len(documents) != 1:
        reason = f"{source}: a ZIP holds one document ({', '.join(patterns)}), not {len(documents)}"
        raise Refused("mapping", reason, "zip-document")
    try:
        check_unique_names([name for name, _ in files])
    except AttachmentRefused as exc:
        raise Refused("attachment", f"{source}: {exc}", "attachment-name") from None
    return documents[0], files


def write_zip(
    target: Path, document_name: str, document: bytes, files: tuple[ReceivedAttachment, ...]
) -> None:
    """The document and its files as a stored ZIP, each file streamed in (blocking: a thread)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(document_name, document)
        for file in files:
            member = zipfile.ZipInfo(ATTACHMENTS_PREFIX + check_file_name(file.facts.file_name))
            with file.path.open("rb") as data, archive.open(member, "w", force_zip64=True) as out:
                shutil.copyfileobj(data, out, COPY_BUFFER)


class MeshOutbound:
    """The edge's handler: sends each message for the agency to its MESH mailbox, once.

    The edge hands over several messages at once; up to SENDERS are sent at
    once, each with a client of its own (a MESH client's auth nonce counter is
    not thread-safe). It consumes with ``receipts_later``: MeshInbound
    receipts once MESH tracking says so.
    """

    def __init__(
        self,
        settings: MeshSettings,
        profile: Profile,
        ledger: Ledger,
        private_keys_dir: Path,
        agency: str,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.ledger = ledger
        self.agency = agency
        self.dirs = make_folders(settings.root)
        self.pending = Pending(self.dirs["pending"])
        self.clients = [mesh_client(settings, private_keys_dir, agency) for _ in range(SENDERS)]
        self._idle: asyncio.Queue[MeshClient] = asyncio.Queue()
        for client in self.clients:
            self._idle.put_nowait(client)
        self._threads = ThreadPoolExecutor(SENDERS, thread_name_prefix=f"mesh-{agency}-out")

    async def close(self) -> None:
        for client in self.clients:
            await asyncio.to_thread(client.close)
        self._threads.shutdown(wait=False)

    async def __call__(self, delivered: Delivered) -> None:
        fields = delivered.header.fields
        key = f"mesh-out:{fields.message_id}"
        done = await asyncio.to_thread(self.ledger.sent, self.agency, key)
        # Sent before a crash that came ahead of the edge's record: not sent again.
        mesh_id = done.message_ids[0] if done is not None else await self._send(delivered)
        if done is None:
            await asyncio.to_thread(
                self.ledger.record,
                self.agency,
                key,
                0,
                delivered.plaintext_sha256,
                f"message {fields.message_id}",
                mesh_id,
                utc_now(),
            )
        if fields.message_type not in SYSTEM_MESSAGE_TYPES and delivered.receipting is not None:
            accepted = Accepted(mesh_id, utc_now(), delivered.receipting)
            await asyncio.to_thread(self.pending.add, accepted)
        log.info(
            "mesh.accepted",
            agency=self.agency,
            message_id=fields.message_id,
            mesh_id=mesh_id,
            attachments=len(delivered.attachments),
        )

    async def _send(self, delivered: Delivered) -> str:
        fields = delivered.header.fields
        native = self.profile.to_native(delivered.payload, f"message {fields.message_id}")
        document_name = f"{fields.message_id}.xml"
        if not delivered.attachments:
            return await self._send_data(
                native,
                document_name,
                self.profile.media_types[0],
                fields.message_id,
                fields.message_type,
            )
        spool = self.dirs["processing"] / f"{fields.message_id}.zip"
        try:
            await asyncio.to_thread(write_zip, spool, document_name, native, delivered.attachments)
            with spool.open("rb") as data:
                return await self._send_data(
                    data, spool.name, ZIP_TYPE, fields.message_id, fields.message_type
                )
        finally:
            await asyncio.to_thread(spool.unlink, True)

    async def _send_data(
        self, data: object, filename: str, content_type: str, message_id: str, message_type: str
    ) -> str:
        send = functools.partial(
            MeshClient.send_message,
            recipient=self.settings.recipient,
            data=data,
            workflow_id=self.settings.workflow_for(message_type),
            local_id=message_id,
            subject=message_type,
            filename=filename,
            content_type=content_type,
        )
        client = await self._idle.get()
        try:
            mesh_id: str = await asyncio.get_running_loop().run_in_executor(
                self._threads, send, client
            )
        finally:
            self._idle.put_nowait(client)
        return mesh_id
