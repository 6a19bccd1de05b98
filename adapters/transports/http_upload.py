"""A document and its files in one ``multipart/form-data`` POST, streamed to disk part by part.

The form (RFC 7578), in this order:

- ``document``: the native or canonical document, with its own
  ``Content-Type`` (one the profile takes, or the canonical XML's); read into
  memory, at most ``max_body_bytes``;
- ``attachment`` (zero or more): one file each, ``filename`` set (the name
  the receiving system gets; the safe-name rule of gateway/core/attachments.py
  applies) and its ``Content-Type`` (guessed from the name when absent or
  ``application/octet-stream``).

Why this and not a resumable upload: one request carries the message whole,
so ``Idempotency-Key`` keeps its meaning (a repeat of the same document and
files returns the same ids) and every client library can send it; a client
that loses the connection sends it again under the same key.

Memory stays flat: each file part is read in READ_CHUNK pieces, written to
its own spool file (0600, in a folder of its own under
``state/uploads/<agency>/``) and digested as it passes; nothing holds a
whole part. The folder is removed once the message is sent or refused, and
whatever a crash left there at the adapter's next start.

Limits, from ``[limits]``: a request whose ``Content-Length`` already says
it is over what the limits allow is refused before a byte is read; a part
that declares its ``Content-Length`` is refused before its bytes are read;
the file count is checked as each part begins, and each file's size and the
total as the bytes arrive, so reading stops at the first byte past a limit
(413, naming the limit). Time: the body must keep arriving at MIN_RATE bytes
a second on average after ``body_seconds`` of grace (408 otherwise), so a
large upload has the time it needs and a trickle is still cut off.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import BodyPartReader, MultipartReader, hdrs

from gateway.core.attachments import AttachmentLimits, AttachmentRefused, check_file_name
from gateway.services.transfer_sender import AttachmentFile

READ_CHUNK = 1024 * 1024
MIN_RATE = 64 * 1024  # bytes a second, on average, once body_seconds of grace are spent
PART_OVERHEAD = 16 * 1024  # a part's boundary and headers, at most, for the Content-Length check
DOCUMENT = "document"
ATTACHMENT = "attachment"
GUESSED = "application/octet-stream"


class UploadRefused(Exception):
    """A form that is not taken: the HTTP status, a short error code and the reason."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Upload:
    """The document, its media type, its files spooled on disk, and one digest of it all."""

    document: bytes
    media_type: str
    files: tuple[AttachmentFile, ...]
    # SHA-256 over the document and each file's name and SHA-256: what an Idempotency-Key
    # is compared by.
    digest: str


class Pace:
    """The body's deadline: ``grace`` seconds, plus one second for each MIN_RATE bytes come."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.started = asyncio.get_running_loop().time()

    def left(self, received: int) -> float:
        deadline = self.started + self.grace + received / MIN_RATE
        return deadline - asyncio.get_running_loop().time()


def largest_body(max_document: int, limits: AttachmentLimits) -> int:
    """The most a form may be: the document, every file at the limits, each part's overhead."""
    return max_document + limits.max_total_bytes + PART_OVERHEAD * (limits.max_attachments + 1)


def spool_root(base_dir: Path, agency: str) -> Path:
    """Where this agency's uploads are spooled, emptied of what a crash left."""
    root = base_dir / "state" / "uploads" / agency
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o700)
    return root


async def read_upload(
    reader: MultipartReader,
    folder: Path,
    max_document: int,
    limits: AttachmentLimits,
    pace: Pace,
) -> Upload:
    """Read the form into memory (the document) and ``folder`` (the files); UploadRefused."""
    received = 0
    first = await _next_part(reader, pace, received)
    if first is None or first.name != DOCUMENT or first.filename is not None:
        raise UploadRefused(
            400, "bad-form", f"the form's first part must be {DOCUMENT!r} (no filename)"
        )
    media_type = first.headers.get(hdrs.CONTENT_TYPE, "").partition(";")[0].strip()
    document = bytearray()
    while chunk := await _chunk(first, pace, received):
        received += len(chunk)
        document += chunk
        if len(document) > max_document:
            raise UploadRefused(
                413, "too-large", f"the document is over the {max_document}-byte limit"
            )
    digest = hashlib.sha256(hashlib.sha256(document).digest())
    files: list[AttachmentFile] = []
    total = 0
    while (part := await _next_part(reader, pace, received)) is not None:
        name = _file_name(part, len(files) + 1, limits)
        path = folder / str(len(files))
        file_digest = hashlib.sha256()
        size = 0
        with _spool(path) as out:
            while chunk := await _chunk(part, pace, received):
                received += len(chunk)
                size += len(chunk)
                total += len(chunk)
                _within(name, size, total, limits)
                file_digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
        declared = part.headers.get(hdrs.CONTENT_TYPE, "").partition(";")[0].strip()
        media = None if declared in ("", GUESSED) else declared
        files.append(AttachmentFile(path, media, None, name))
        digest.update(f"\0{name}\0{file_digest.hexdigest()}".encode())
    return Upload(bytes(document), media_type, tuple(files), digest.hexdigest())


def _file_name(part: BodyPartReader, number: int, limits: AttachmentLimits) -> str:
    """The file's name, checked with the count and any declared size before its bytes are read."""
    if part.name != ATTACHMENT or not part.filename:
        raise UploadRefused(
            400, "bad-form", f"part {number + 1} must be {ATTACHMENT!r} with a filename"
        )
    try:
        name = check_file_name(part.filename)
    except AttachmentRefused as refused:
        raise UploadRefused(422, refused.check, str(refused)) from None
    if number > limits.max_attachments:
        raise UploadRefused(
            413, "limit", f"over {limits.max_attachments} attachments; [limits] max_attachments"
        )
    declared = part.headers.get(hdrs.CONTENT_LENGTH, "")
    if declared.isdigit():
        _within(name, int(declared), int(declared), limits)
    return name


def _within(name: str, size: int, total: int, limits: AttachmentLimits) -> None:
    if size > limits.max_attachment_bytes:
        raise UploadRefused(
            413,
            "limit",
            f"attachment {name!r} is over {limits.max_attachment_bytes} bytes; "
            "[limits] max_attachment_bytes",
        )
    if total > limits.max_total_bytes:
        raise UploadRefused(
            413,
            "limit",
            f"the attachments are over {limits.max_total_bytes} bytes; [limits] max_total_bytes",
        )


def _spool(path: Path) -> BinaryIO:
    """A new file for a part's bytes, readable by this process's user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


async def _next_part(reader: MultipartReader, pace: Pace, received: int) -> BodyPartReader | None:
    try:
        async with asyncio.timeout(max(pace.left(received), 0.0)):
            part = await reader.next()
    except TimeoutError:
        raise _too_slow(pace) from None
    except ValueError as exc:  # a malformed boundary or part head
        raise UploadRefused(400, "bad-form", f"the form is malformed: {exc}") from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise UploadRefused(400, "bad-form", "a nested multipart part is not taken")
    return part


async def _chunk(part: BodyPartReader, pace: Pace, received: int) -> bytes:
    try:
        async with asyncio.timeout(max(pace.left(received), 0.0)):
            return await part.read_chunk(READ_CHUNK)
    except TimeoutError:
        raise _too_slow(pace) from None


def _too_slow(pace: Pace) -> UploadRefused:
    return UploadRefused(
        408,
        "too-slow",
        f"the body did not arrive within {pace.grace:g} s and {MIN_RATE} bytes a second after",
    )


def upload_folder(root: Path) -> Path:
    """A folder of its own for one request's files (removed by the caller)."""
    return Path(tempfile.mkdtemp(dir=root, prefix="upload-"))
