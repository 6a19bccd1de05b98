"""File drop: the agency system exports into a folder and reads what we write into another.

Layout under the adapter's root::

    outbox/      the agency system drops native files here
    processing/  a file claimed by this adapter (atomic rename)
    archive/     sent: the file, and ``<file>.sent`` listing its message ids; deleted
                 ``archive_days`` after they were written (checked hourly)
    error/       refused: the file, and ``<file>.reason`` saying why (file, line, field);
                 a sent file whose message the exchange refused (a NonDelivery came
                 back) is moved here from archive/ with its ``.sent``, the reason
                 naming each refused message id, the failed check and why
    inbox/       messages for the agency: ``<message id>.json``, its files in
                 ``<message id>.attachments/`` (made whole, then renamed), then
                 ``<message id>.xml``

Pick-up rule (how a half-written file is never read): only names matching
the profile's patterns (``*.xml``, ``*.csv``) that do not start with a dot
are picked up, so the agency system writes ``name.tmp`` (or ``.name.xml``)
and renames it when complete; a rename within a folder is atomic.

A document's files come in a folder beside it, ``NAME.attachments/`` for
``NAME.xml``: the agency system writes the folder first and renames the
document into outbox/ last, so the document's appearance says its files
are complete. The folder is claimed right after its document, into
processing/ under the same prefix (a crash between the two claims is
resumed from outbox/). Only a real folder of regular files is taken, with
names that may travel (gateway/core/attachments.py) and within ``[limits]``,
checked from ``lstat`` before a byte is read; each file is then opened
``O_NOFOLLOW | O_NONBLOCK``, checked with ``fstat`` and digested (the ledger
key covers the document and every file's name and digest). A folder that is
a link, holds a link, a FIFO, a subfolder, a bad name or a file over a
limit sends nothing: the document and its folder go to error/, the reason
naming the file and the rule. The adapter makes processing/ 0700, so once
claimed the files are out of reach of an agency system running as another
user. Once sent, the files are deleted (the exchange carries them); the
document is archived. A folder that cannot be claimed (a permission) sends
nothing either: its document goes to error/ saying so, the folder stays.

A claimed file is renamed to ``<UTC time>-<random>--<name>`` so two files
dropped with the same name never overwrite each other anywhere. Files left
in processing/ by a crash are taken again at start: the ledger knows which
of their documents were already sent, so none is sent twice. A file whose
content was already sent (dropped twice) goes to error/ naming the earlier
message ids.

Only regular files are taken: a symbolic link (which could point anywhere
on the machine), a FIFO (a read would block for ever), a device, a socket
or a folder goes to error/ unread, found by ``lstat`` before the claim and
checked again when the file is opened (``O_NOFOLLOW | O_NONBLOCK``, then
``fstat``), so one swapped in after the claim is refused too. A name too
long to be claimed (over MAX_NAME_BYTES) goes to error/ under a shortened
name. Any error with one file (a name, a permission, a file that vanished)
files that file in error/ with its reason and the adapter goes on; a file
that cannot even be moved is left where it is, with its reason logged once
(and written to error/ if it can be), and skipped until the next start.

The NonDelivery and the filing race (a CSV's first row can be refused while
its last is being sent), so each refusal is recorded in the ledger first and
both sides look: the NonDelivery's handler in archive/, the filing in the
ledger once the file is in archive/. Whichever comes second moves it.

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
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import stat
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog

from adapters.inbound import Intake, Reply, digest_of, failed
from adapters.ledger import Ledger, SentAs
from adapters.prepare import Refused
from adapters.profile import Profile
from adapters.transports.durable import ArchivePruner, fsync_dir, move, write_text
from gateway.config.adapter_config import FileDropSettings
from gateway.core.attachments import (
    AttachmentLimits,
    AttachmentRefused,
    check_file_name,
    check_limits,
    check_unique_names,
)
from gateway.core.notices import non_delivery_facts
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services import metrics
from gateway.services.edge import Delivered
from gateway.services.transfer_sender import AttachmentFile
from gateway.services.transfer_staging import write_attachments

log = structlog.get_logger("adapters.filedrop")

TRANSPORT = "filedrop"
FOLDERS = ("outbox", "processing", "archive", "error", "inbox")
CLAIM_SEPARATOR = "--"
WORKERS = 16  # files in hand at once
CLAIM_BATCH = 256  # files claimed per pass, so sending starts soon after a big drop
FILE_KEY = "file:"  # ledger keys of files: the prefix, then the content's SHA-256
SENT_SUFFIX = ".sent"
FILES_SUFFIX = ".attachments"  # NAME.xml's files come in the folder NAME.attachments/
READ_CHUNK = 1024 * 1024
_REFILING = threading.Lock()  # one refiling at a time: each rewrites a reason whole
NAME_MAX = 255  # bytes in one file name (Linux, and most file systems)
CLAIM_PREFIX_BYTES = len("20261123T090000Z-0000abcd--")
TEMP_BYTES = len("..12345678.part")  # what gateway.infra.atomic adds to a name while writing
# The longest name that still fits once claimed, with ``.reason`` and a temp name around it.
MAX_NAME_BYTES = NAME_MAX - CLAIM_PREFIX_BYTES - len(".reason") - TEMP_BYTES
KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def folders(root: Path) -> dict[str, Path]:
    return {name: root / name for name in FOLDERS}


def make_folders(root: Path) -> None:
    for path in folders(root).values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


def picked_up(name: str, patterns: tuple[str, ...]) -> bool:
    return not name.startswith(".") and any(fnmatch.fnmatchcase(name, p) for p in patterns)


def original_name(claimed: str) -> str:
    return claimed.split(CLAIM_SEPARATOR, 1)[-1]


def kind_of(mode: int) -> str:
    """What a directory entry is, in words, from its ``st_mode``."""
    return next((kind for test, kind in KINDS if test(mode)), "not a regular file")


def shown(name: str) -> str:
    """A file name as a person can read it in a reason: undecodable bytes and controls escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def fitted(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` cut to at most ``limit`` bytes, so it can be claimed or filed."""
    return os.fsdecode(os.fsencode(name)[:limit])


@dataclass(frozen=True)
class Unfit:
    """Why a directory entry is not taken: ``stage`` counts it, ``reason`` goes beside it."""

    stage: str
    reason: str


def unfit(name: str, mode: int) -> Unfit | None:
    """Why the entry ``name`` (of ``st_mode`` from ``lstat``) cannot be taken, if it cannot."""
    if not stat.S_ISREG(mode):
        return Unfit(
            "not-a-file",
            f"{shown(name)}: is {kind_of(mode)}, not a regular file; only regular files are "
            "taken (write the file itself into outbox/, then rename it)",
        )
    size = len(os.fsencode(name))
    if size > MAX_NAME_BYTES:
        return Unfit(
            "name",
            f"{shown(name)}: the name is {size} bytes long, over the {MAX_NAME_BYTES} the file "
            "drop takes; give it a shorter name and drop it again",
        )
    return None


class NotRegular(OSError):
    """Opened, it was not a regular file (swapped in after the claim)."""


def open_regular(path: Path) -> BinaryIO:
    """The file opened, only if it is a regular file: never follows a link, never blocks."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular(errno.ELOOP, kind_of(stat.S_IFLNK)) from None
        raise
    handle = os.fdopen(fd, "rb")
    mode = os.fstat(handle.fileno()).st_mode
    if not stat.S_ISREG(mode):
        handle.close()
        raise NotRegular(errno.EINVAL, kind_of(mode))
    return handle


def read_regular(path: Path) -> bytes:
    """The file's bytes, only if it is a regular file (``open_regular``)."""
    with open_regular(path) as handle:
        return handle.read()


def files_folder(document: Path) -> Path:
    """The folder of files that goes with ``document``: ``NAME.attachments`` beside ``NAME.xml``."""
    return document.with_name(f"{Path(document.name).stem}{FILES_SUFFIX}")


def read_files(
    folder: Path, source: str, limits: AttachmentLimits
) -> tuple[tuple[AttachmentFile, ...], str]:
    """The files in a claimed document's folder, checked, and a digest of their names and bytes.

    Only a real folder (never a link to one) of regular files with safe names
    is taken: names, count and sizes are checked against ``[limits]`` from
    ``lstat`` before a byte is read; then each file is opened ``O_NOFOLLOW |
    O_NONBLOCK``, checked again with ``fstat`` and digested, streamed. Files go
    in name order. Raises Refused naming the file and the rule. Blocking.
    """
    if not os.path.lexists(folder):
        return (), ""
    shown_folder = f"{source}: {shown(original_name(folder.name))}/"
    mode = os.lstat(folder).st_mode
    if not stat.S_ISDIR(mode):
        raise Refused(
            "not-a-file", f"{shown_folder} is {kind_of(mode)}, not a folder of files", "not-a-file"
        )
    entries = sorted(os.listdir(folder))
    sized: list[tuple[str, int]] = []
    for name in entries:
        mode, size = _lstat(folder / name)
        if not stat.S_ISREG(mode):
            reason = f"{shown_folder}{shown(name)} is {kind_of(mode)}; only regular files are taken"
            raise Refused("not-a-file", reason, "not-a-file")
        sized.append((name, size))
    try:
        for name, _ in sized:
            if name != name.encode("utf-8", "replace").decode("utf-8"):
                reason = f"{shown_folder}{shown(name)}: the name is not UTF-8"
                raise Refused("attachment", reason, "attachment")
            check_file_name(name)
        check_unique_names(entries)
        check_limits(sized, limits)
    except AttachmentRefused as refused:
        raise Refused(refused.check, f"{shown_folder} {refused}", refused.check) from None
    digest = hashlib.sha256()
    for name, size in sized:
        file_digest = _digest_regular(folder / name, f"{shown_folder}{shown(name)}", size)
        digest.update(f"\0{name}\0{file_digest}".encode())
    files = tuple(AttachmentFile(folder / name, name=name) for name, _ in sized)
    return files, digest.hexdigest()


def _lstat(path: Path) -> tuple[int, int]:
    found = os.lstat(path)
    return found.st_mode, found.st_size


def _digest_regular(path: Path, shown_path: str, size: int) -> str:
    """The SHA-256 of a regular file (``open_regular``), streamed; Refused naming the file."""
    digest = hashlib.sha256()
    length = 0
    try:
        with open_regular(path) as handle:
            while chunk := handle.read(READ_CHUNK):
                digest.update(chunk)
                length += len(chunk)
    except NotRegular as exc:
        reason = f"{shown_path} is {exc.strerror}; only regular files are taken"
        raise Refused("not-a-file", reason, "not-a-file") from None
    except OSError as exc:
        raise Refused("read", f"{shown_path}: cannot read: {exc.strerror}", "read") from None
    if length != size:
        raise Refused("read", f"{shown_path}: changed while being read", "read")
    return digest.hexdigest()


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
        self._left: set[Path] = set()  # files that could not be moved: skipped, reported once
        self._files_unclaimed: dict[Path, str] = {}  # claimed documents whose folder stayed
        # At 0 from the start, so the first stuck file is an increase an alert can see.
        metrics.ADAPTER_ERRORS.labels(agency=intake.agency, transport=TRANSPORT, stage="stuck")

    async def start(self) -> None:
        """Folders are made in the constructor; a claimed file is resumed in ``run``."""

    async def close(self) -> None:
        """Nothing is held between polls."""

    async def run(self, stop: asyncio.Event) -> None:
        await self.recover()
        pruner = ArchivePruner(
            self.dirs["archive"], self.settings.archive_days, self.intake.agency, TRANSPORT
        )
        while not stop.is_set():
            await pruner.when_due()
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)

    async def recover(self) -> None:
        """Finish files a previous run claimed but did not file away."""
        claimed = sorted(self.dirs["processing"].iterdir())
        documents = [p for p in claimed if not p.name.endswith(FILES_SUFFIX)]
        await self._process_all(documents, resuming=True)
        try:
            await asyncio.to_thread(self._file_orphans, {files_folder(p) for p in documents})
        except OSError as exc:  # tried again at the next start; sending goes on
            failed(self.intake.agency, TRANSPORT, "orphans")
            log.error("files.orphans_not_filed", agency=self.intake.agency, error=exc.strerror)

    def _file_orphans(self, taken: set[Path]) -> None:
        """A files folder left in processing/ without its document (a crash as it was filed):
        deleted if the document was sent (in archive/), else moved to error/ with a reason."""
        for folder in self.dirs["processing"].iterdir():
            if not folder.name.endswith(FILES_SUFFIX) or folder in taken:
                continue
            stem = folder.name.removesuffix(FILES_SUFFIX)
            if any(Path(n).stem == stem for n in os.listdir(self.dirs["archive"])):
                shutil.rmtree(folder)
                continue
            reason = f"{shown(original_name(folder.name))}: its document was not found; not sent"
            write_text(self.dirs["error"] / f"{folder.name}.reason", reason + "\n")
            move(folder, self.dirs["error"])

    async def poll_once(self) -> int:
        """Claim and process the complete files in outbox/ (at most CLAIM_BATCH); how many."""
        claimed = await asyncio.to_thread(self._claim_batch)
        await self._process_all(claimed, resuming=False)
        return len(claimed)

    def _claim_batch(self) -> list[Path]:
        outbox = self.dirs["outbox"]
        names = sorted(os.listdir(outbox))
        ready = [
            n
            for n in names
            if picked_up(n, self.intake.profile.patterns) and outbox / n not in self._left
        ][:CLAIM_BATCH]
        claimed = [c for c in (self._claim(n) for n in ready) if c is not None]
        if claimed:  # the claims are durable before anything is sent
            fsync_dir(self.dirs["processing"])
            fsync_dir(outbox)
        return claimed

    def _claim(self, name: str) -> Path | None:
        """Rename a regular file into processing/; file anything else in error/ unread."""
        source = self.dirs["outbox"] / name
        prefix = f"{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}{CLAIM_SEPARATOR}"
        try:
            problem = unfit(name, os.lstat(source).st_mode)
            if problem is None:
                target = self.dirs["processing"] / f"{prefix}{name}"
                os.rename(source, target)
                try:
                    self._claim_files(files_folder(source), files_folder(target))
                except OSError as exc:  # never sent without its files: process refuses it
                    self._files_unclaimed[target] = exc.strerror or str(exc)
                return target
        except FileNotFoundError:
            return None  # another adapter process claimed it first, or it was taken back
        except OSError as exc:
            problem = Unfit("claim", f"{shown(name)}: cannot be claimed: {exc.strerror}")
        self._file_unclaimed(source, self.dirs["error"] / f"{prefix}{fitted(name)}", problem)
        return None

    @staticmethod
    def _claim_files(folder: Path, target: Path) -> None:
        """Take the document's folder (or whatever has its name) into processing/ beside it.

        After the document's own claim, so a crash between the two leaves the
        folder in outbox/, where ``process`` looks for it too.
        """
        with contextlib.suppress(FileNotFoundError):
            os.rename(folder, target)

    def _file_unclaimed(self, source: Path, target: Path, problem: Unfit) -> None:
        """Move an entry that was never claimed straight from outbox/ to error/, reason first."""
        try:
            write_text(target.with_name(f"{target.name}.reason"), problem.reason + "\n")
            os.rename(source, target)
            self._claim_files(files_folder(source), files_folder(target))  # its files go too
            fsync_dir(target.parent)
            fsync_dir(source.parent)
        except FileNotFoundError:
            return  # taken back before it could be filed: the reason says what it was
        except OSError as exc:
            self._leave(source, problem, exc)
            return
        failed(self.intake.agency, TRANSPORT, problem.stage)
        log.warning("file.refused", agency=self.intake.agency, stage=problem.stage)

    def _leave(self, path: Path, problem: Unfit, exc: OSError) -> None:
        """A file that cannot be moved stays where it is and is skipped; said once, not per poll."""
        if path in self._left:
            return
        self._left.add(path)
        failed(self.intake.agency, TRANSPORT, "stuck")
        log.error(
            "file.stuck",
            agency=self.intake.agency,
            folder=path.parent.name,
            stage=problem.stage,
            error=exc.strerror,
        )
        note = self.dirs["error"] / f"{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.stuck"
        with contextlib.suppress(OSError):  # error/ itself may be what fails
            write_text(
                note,
                f"{path.parent.name}/{problem.reason}\nIt cannot be moved to error/ "
                f"({exc.strerror}), so it is left in {path.parent.name}/ and skipped until "
                "the adapter restarts.\n",
            )

    async def _process_all(self, paths: list[Path], resuming: bool) -> None:
        workers = asyncio.Semaphore(WORKERS)

        async def one(path: Path) -> None:
            async with workers:
                await self.process(path, resuming)

        await asyncio.gather(*(one(p) for p in paths))

    async def process(self, path: Path, resuming: bool) -> None:
        source = shown(original_name(path.name))
        try:
            data = await asyncio.to_thread(read_regular, path)
        except NotRegular as exc:
            reason = f"{source}: is {exc.strerror}, not a regular file; only those are taken"
            await self._refuse(path, Refused("not-a-file", reason, "not-a-file"))
            return
        except FileNotFoundError:
            reason = f"{source}: vanished before it was read (deleted or moved); nothing was sent"
            await self._refuse(path, Refused("vanished", reason, "vanished"))
            return
        except OSError as exc:
            reason = f"{source}: cannot read: {exc.strerror}"
            await self._refuse(path, Refused("read", reason, "read"))
            return
        try:
            files, files_digest = await asyncio.to_thread(self._files, path, source, resuming)
        except Refused as refused:
            await self._refuse(path, refused)
            return
        except OSError as exc:
            reason = f"{source}: its files cannot be read: {exc.strerror}"
            await self._refuse(path, Refused("read", reason, "read"))
            return
        digest = (
            digest_of(data) if not files else digest_of(f"{digest_of(data)}{files_digest}".encode())
        )
        key = f"{FILE_KEY}{digest}"
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
                ids = await self.intake.send(documents, key, digest, source, Reply(), files)
            except Refused as refused:
                await self._refuse(path, refused)
                return
        try:
            await asyncio.to_thread(self._archive, path, ids)
        except OSError as exc:  # sent and in the ledger: a restart archives it, sending nothing
            self._leave(path, Unfit("archive", f"{source}: sent, but not archived"), exc)
        else:
            await self._refused_meanwhile(key, path.name)
        log.info(
            "file.sent",
            agency=self.intake.agency,
            file_sha256=digest[:16],
            messages=len(ids),
            message_ids=list(ids),
        )

    def _files(
        self, path: Path, source: str, resuming: bool
    ) -> tuple[tuple[AttachmentFile, ...], str]:
        """The claimed document's files: beside it in processing/, or, when resuming, still in
        outbox/ if a crash came between the two claims (taken now)."""
        folder = files_folder(path)
        unclaimed = self._files_unclaimed.pop(path, None)
        if unclaimed is not None:
            reason = f"{source}: its {shown(folder.name)}/ cannot be claimed: {unclaimed}"
            raise Refused("claim", reason, "claim")
        if resuming and not os.path.lexists(folder):
            left = self.dirs["outbox"] / files_folder(Path(original_name(path.name))).name
            self._claim_files(left, folder)
        return read_files(folder, source, self.intake.edge.config.limits)

    def _archive(self, path: Path, ids: tuple[str, ...]) -> None:
        """The document to archive/; its files, which the exchange now carries, are deleted."""
        write_text(self.dirs["archive"] / f"{path.name}{SENT_SUFFIX}", "\n".join(ids) + "\n")
        move(path, self.dirs["archive"])
        folder = files_folder(path)
        if os.path.lexists(folder):
            shutil.rmtree(folder)
            fsync_dir(folder.parent)

    async def _refused_meanwhile(self, key: str, name: str) -> None:
        """A NonDelivery may have come back while the file was still being sent: file it so."""
        ledger, agency = self.intake.ledger, self.intake.agency
        await asyncio.to_thread(refile_refused, self.dirs, ledger, agency, key, name)

    async def _refuse(self, path: Path, refused: Refused) -> None:
        try:
            await asyncio.to_thread(self._file_error, path, refused.reason)
        except OSError as exc:
            self._leave(path, Unfit(refused.stage, refused.reason), exc)
            return
        failed(self.intake.agency, TRANSPORT, refused.stage)
        log.warning("file.refused", agency=self.intake.agency, stage=refused.stage)

    def _file_error(self, path: Path, reason: str) -> None:
        """The reason first, then the file: a file in error/ always has its reason beside it.

        A file that vanished leaves its reason alone in error/, the trace of what happened.
        """
        write_text(self.dirs["error"] / f"{path.name}.reason", reason + "\n")
        with contextlib.suppress(FileNotFoundError):
            move(files_folder(path), self.dirs["error"])
        with contextlib.suppress(FileNotFoundError):
            move(path, self.dirs["error"])


class FileDropOutbound:
    """The edge's handler: writes each delivered message into inbox/, durably, once.

    A NonDelivery for a message sent from a file is also acted on: the file
    moves from archive/ to error/ (``refile_refused``).
    """

    def __init__(
        self, settings: FileDropSettings, profile: Profile, ledger: Ledger, agency: str
    ) -> None:
        self.dirs = folders(settings.root)
        self.inbox = self.dirs["inbox"]
        self.profile = profile
        self.ledger = ledger
        self.agency = agency
        make_folders(settings.root)

    async def __call__(self, delivered: Delivered) -> None:
        await asyncio.to_thread(self._write, delivered)
        if delivered.header.fields.message_type == "NonDelivery":
            await asyncio.to_thread(self._file_refused, delivered)

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
            "attachments": [
                {"file_name": a.facts.file_name, "size": a.facts.size, "sha256": a.facts.sha256}
                for a in delivered.attachments
            ],
        }
        write_text(self.inbox / f"{fields.message_id}.json", json.dumps(facts, indent=2) + "\n")
        if delivered.attachments:
            write_attachments(payload_path, delivered.attachments)
        with atomic_writer(payload_path) as out:
            out.write(native)

    def _file_refused(self, delivered: Delivered) -> None:
        """Record the exchange's refusal of a message this drop sent, and refile its file.

        The refused id is the NonDelivery's ``in_reply_to`` (its signed header);
        messages not sent from a file (receipts, other adapters') are left be.
        """
        refused_id = delivered.header.fields.in_reply_to
        sent = self.ledger.sent_as(self.agency, refused_id) if refused_id else None
        if refused_id is None or sent is None or not sent.key.startswith(FILE_KEY):
            return
        facts = non_delivery_facts(delivered.payload)
        reason = f"{facts.check}: {facts.reason}"
        self.ledger.record_refusal(self.agency, refused_id, reason, utc_now())
        log.warning(
            "file.refused_by_exchange",
            agency=self.agency,
            message_id=refused_id,
            check=facts.check,
        )
        name = sent_file(self.dirs, sent, refused_id)
        if name is not None:  # else it is still being sent: the filing will see the refusal
            refile_refused(self.dirs, self.ledger, self.agency, sent.key, name)


def sent_file(dirs: dict[str, Path], sent: SentAs, message_id: str) -> str | None:
    """The name of the file, in archive/ or already in error/, that became ``message_id``.

    Its ``.sent`` listing names the id; only files dropped under the name the
    ledger recorded as the source are read.
    """
    for folder in (dirs["archive"], dirs["error"]):
        with os.scandir(folder) as entries:
            listings = [e.name for e in entries if e.name.endswith(SENT_SUFFIX)]
        for listing in listings:
            name = listing.removesuffix(SENT_SUFFIX)
            if shown(original_name(name)) != sent.source:
                continue
            with contextlib.suppress(FileNotFoundError):
                if message_id in (folder / listing).read_text("utf-8").split():
                    return name
    return None


def refile_refused(dirs: dict[str, Path], ledger: Ledger, agency: str, key: str, name: str) -> None:
    """Move file ``name`` (sent under ``key``) from archive/ to error/ if the exchange refused
    any of its messages, its reason naming each refused id, check and why.

    Idempotent, so the NonDelivery's handler and the filing may both call it:
    the reason is rewritten whole from the ledger, and a move already made is
    not an error. A file some of whose messages went through says which, so
    nobody sends those again. A folder that refuses the move is logged, and
    stops neither the adapter nor the hand-over of the NonDelivery.
    """
    with _REFILING:
        reasons = ledger.refusals(agency, key)
        if not reasons:
            return
        sent = ledger.sent(agency, key)
        source = shown(original_name(name))
        lines = [
            f"{source}: the exchange refused message {message_id}: {reason}"
            for message_id, reason in reasons.items()
        ]
        through = [i for i in (sent.message_ids if sent else ()) if i not in reasons]
        if through:
            lines.append(f"{source}: not refused, do not send again: {', '.join(through)}")
        try:
            write_text(dirs["error"] / f"{name}.reason", "\n".join(lines) + "\n")
            for moving in (f"{name}{SENT_SUFFIX}", name):  # the file last: people act on it
                with contextlib.suppress(FileNotFoundError):
                    move(dirs["archive"] / moving, dirs["error"])
        except OSError as exc:  # the refusal stays in the ledger, the NonDelivery in inbox/
            log.error("file.not_refiled", agency=agency, error=exc.strerror)
