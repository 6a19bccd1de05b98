"""Sending a message with attachments: check, digest, seal, then publish its head and pieces.

Order, and why:
1. Each file's name and size are checked against the safe-name rule and
   ``[limits]`` from ``stat`` alone, so a refusal comes before a byte is read.
2. Each file is read once to digest it (SHA-256, streamed); the payload then
   names it (gateway/core/attachments.py ``with_manifest``) and is checked
   against its schema again.
3. Sealing reads each file a second time, into an on-disk ciphertext spool
   (never plaintext), and refuses a file whose bytes changed since step 2.
4. The envelope message (head and payload section) is published first,
   then the attachment sections in pieces of ``piece_size`` bytes, each
   signed (gateway/core/envelope/pieces.py), at most ``window`` awaiting
   their publisher confirms at once.

Memory: a digest buffer, the sealing segment, and ``window`` pieces in
flight; never a whole file (bench/attachments.py measures it). A retry after
a lost confirm sends the same bytes again; the receiving edge keeps one copy
of each piece.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import mimetypes
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aio_pika.abc import AbstractExchange

from gateway.broker import piece_headers, topology
from gateway.broker.publisher import publish_until_confirmed
from gateway.core.attachments import (
    AttachmentFacts,
    AttachmentLimits,
    AttachmentRefused,
    check_file_name,
    check_limits,
    check_unique_names,
)
from gateway.core.envelope import (
    AttachmentInput,
    Header,
    HeaderFields,
    RecipientKey,
    SigningIdentity,
    seal_message,
)
from gateway.core.envelope.pieces import DEFAULT_PIECE_SIZE, Piece, piece_count, sign_piece
from gateway.core.envelope.streams import Chained, read_up_to
from gateway.infra.spool import ciphertext_spool

DIGEST_CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]  # (pieces confirmed, pieces in all)
DEFAULT_WINDOW = 8  # pieces awaiting a confirm; bench/README.md says why


@dataclass(frozen=True)
class AttachmentFile:
    """A file to attach, as the sender gives it; the name and media type default from the path."""

    path: Path
    media_type: str | None = None
    description: str | None = None
    name: str | None = None


def checked_files(
    files: Sequence[AttachmentFile], limits: AttachmentLimits
) -> list[tuple[AttachmentFile, str, int]]:
    """Name and size of each file, refused by rule or limit before any byte is read."""
    found = []
    for file in files:
        name = check_file_name(file.name or file.path.name)
        try:
            stat = file.path.stat()
        except OSError as exc:
            raise AttachmentRefused(
                "attachment", f"{file.path}: cannot read: {exc.strerror}"
            ) from None
        if not file.path.is_file():
            raise AttachmentRefused("attachment", f"{file.path}: not a regular file")
        found.append((file, name, stat.st_size))
    check_unique_names([name for _, name, _ in found])
    check_limits([(name, size) for _, name, size in found], limits)
    return found


def digest_files(files: Sequence[tuple[AttachmentFile, str, int]]) -> list[AttachmentFacts]:
    """Each file read once, streamed, for the SHA-256 the payload will name (blocking: a thread)."""
    facts = []
    for file, name, size in files:
        digest = hashlib.sha256()
        length = 0
        with file.path.open("rb") as handle:
            while chunk := handle.read(DIGEST_CHUNK):
                digest.update(chunk)
                length += len(chunk)
        if length != size:
            raise AttachmentRefused(
                "attachment", f"{file.path}: changed size while being read ({size} -> {length})"
            )
        media_type = file.media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        facts.append(AttachmentFacts(name, media_type, size, digest.hexdigest(), file.description))
    return facts


class SealedTransfer:
    """A sealed message whose attachment sections wait in spools, ready to be cut into pieces."""

    def __init__(self, head: bytes, header: Header, spools: list[BinaryIO], stack: ExitStack):
        self.head = head
        self.header = header
        self.spools = spools
        self._stack = stack

    def close(self) -> None:
        self._stack.close()


def seal_transfer(
    fields: HeaderFields,
    payload: bytes,
    signer: SigningIdentity,
    keys: Sequence[RecipientKey],
    files: Sequence[tuple[AttachmentFile, AttachmentFacts]],
) -> SealedTransfer:
    """Seal (blocking: run it in a thread); close the result when its pieces are sent."""
    stack = ExitStack()
    try:
        inputs = [
            AttachmentInput(
                stack.enter_context(file.path.open("rb")),
                facts.sha256,
                stack.enter_context(ciphertext_spool()),
            )
            for file, facts in files
        ]
        out = io.BytesIO()
        spool = stack.enter_context(ciphertext_spool())
        header = seal_message(
            fields, io.BytesIO(payload), signer, keys, out, spool, attachments=inputs
        )
        return SealedTransfer(out.getvalue(), header, [i.spool for i in inputs], stack)
    except BaseException:
        stack.close()
        raise


async def publish_transfer(
    ingress: AbstractExchange,
    sealed: SealedTransfer,
    signer: SigningIdentity,
    piece_size: int = DEFAULT_PIECE_SIZE,
    window: int = DEFAULT_WINDOW,
    progress: Progress | None = None,
) -> int:
    """The envelope message, then every piece; returns the number of pieces sent.

    A piece refused by the broker (``PublishRefused``) ends the transfer with that
    error: the envelope is routed already, so its recipients drop the transfer after
    ``[limits] transfer_timeout`` and the sender gets a receipt naming ``incomplete``.
    """
    fields = sealed.header.fields
    await publish_until_confirmed(
        ingress,
        sealed.head,
        routing_key=topology.INGRESS_ROUTING_KEY,
        message_id=fields.message_id,
        correlation_id=fields.correlation_id,
        message_type=fields.message_type,
    )
    header = sealed.header
    count = piece_count(header.container_length - header.ciphertext_length, piece_size)
    sections = Chained(list(sealed.spools))
    slots = asyncio.Semaphore(window)
    sending: set[asyncio.Task[None]] = set()
    confirmed = 0

    async def send(index: int, body: bytes) -> None:
        try:
            piece = Piece(fields.message_id, header.sha256, index, count, piece_size, b"")
            signed = Piece(
                piece.message_id,
                piece.header_sha256,
                index,
                count,
                piece_size,
                sign_piece(signer.private_key, piece, body),
            )
            await publish_until_confirmed(
                ingress,
                body,
                routing_key=topology.INGRESS_ROUTING_KEY,
                headers=piece_headers.encode(signed, signer.key_id),
                message_id=fields.message_id,
                correlation_id=fields.correlation_id,
                message_type=piece_headers.PIECE_TYPE,
            )
            nonlocal confirmed
            confirmed += 1
            if progress is not None:
                progress(confirmed, count)
        finally:
            slots.release()

    try:
        for index in range(1, count + 1):
            body = await asyncio.to_thread(read_up_to, sections, piece_size)  # type: ignore[arg-type]
            await slots.acquire()
            for task in [t for t in sending if t.done()]:
                sending.discard(task)
                task.result()  # a failed piece stops the transfer here
            sending.add(asyncio.create_task(send(index, body)))
        await asyncio.gather(*sending)
    finally:
        for task in sending:
            task.cancel()
    return count
