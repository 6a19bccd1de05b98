"""The receiving edge's side of a transfer: pieces staged on disk until all are there.

Layout, one folder per transfer under ``state/transfers/<agency>/<message id>/``:
``envelope`` (the envelope message's body), ``plan`` (the piece count, piece
size and header digest the first piece stated), ``<index>.piece`` (each piece,
written by temp file, fsync and rename before its broker message is acked),
``files/<index>`` (the opened attachments, while they are handed over), and
``refused`` once the transfer was refused (its later pieces are acked and
dropped until the folder is swept).

A piece seen again with the same bytes is a redelivery (kept once); with
other bytes, or stating another count, size or header digest than the
transfer's first piece, it is refused (``pieces``). When the envelope and
every piece are on disk, ``open_transfer`` checks the set against the signed
header (gateway/core/envelope/pieces.py ``check_pieces``: none missing, none
extra, the total length) and opens the container streamed from the files:
every section's digest and AES-GCM tag and the sender's statements are
checked before the message is handed over. Nothing partial is ever handed
over: the handler gets the payload and the files only when all of this passed.

A transfer to which nothing has arrived for ``[limits] transfer_timeout``
(its folder's modification time), and that is not complete, is swept: the
sender is told by a negative receipt naming ``incomplete`` and the missing
pieces, and the folder is removed.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

from gateway.core.attachments import AttachmentFacts, check_file_name
from gateway.core.envelope import DecryptionIdentity, Opened, open
from gateway.core.envelope.claimed import claimed_header
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import Header
from gateway.core.envelope.pieces import Piece, check_pieces, describe
from gateway.core.envelope.streams import Chained
from gateway.core.registry import Registry
from gateway.infra.atomic import atomic_writer

MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ENVELOPE = "envelope"
PLAN = "plan"
REFUSED = "refused"
FILES = "files"
READ_CHUNK = 1024 * 1024


class PieceRefused(Exception):
    """A piece that cannot belong to its transfer as staged; the reason names the check."""


@dataclass(frozen=True)
class ReceivedAttachment:
    """A file of a delivered message: what the payload names, and where its bytes wait."""

    facts: AttachmentFacts
    path: Path


@dataclass(frozen=True)
class Stale:
    """A transfer past its time: its envelope's header if it came, and what is missing."""

    message_id: str
    header: Header | None
    envelope: bytes | None
    missing: str


class Staging:
    """One agency's staged transfers (blocking file work: call it from a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, message_id: str) -> Path:
        if not MESSAGE_ID.fullmatch(message_id):
            raise PieceRefused(f"transfer id {message_id[:40]!r} is not a message id")
        return self.root / message_id

    def stage_envelope(self, message_id: str, body: bytes) -> None:
        target = self.folder(message_id) / ENVELOPE
        if not target.exists():
            with atomic_writer(target) as out:
                out.write(body)

    def stage_piece(self, piece: Piece, body: bytes) -> None:
        folder = self.folder(piece.message_id)
        plan = f"{piece.count} {piece.piece_size} {piece.header_sha256}"
        plan_file = folder / PLAN
        if plan_file.exists():
            stated = plan_file.read_text(encoding="ascii")
            if stated != plan:
                raise PieceRefused(
                    f"piece {piece.index} states {plan.split(' ', 2)[:2]} (count, size) for "
                    f"header {piece.header_sha256[:12]}, the transfer's first piece "
                    f"{stated.split(' ', 2)[:2]} for {stated.split(' ', 2)[2][:12]}: "
                    "a piece from another transfer"
                )
        else:
            with atomic_writer(plan_file) as out:
                out.write(plan.encode("ascii"))
        target = folder / f"{piece.index:08d}.piece"
        if target.exists():
            if _sha256(target) != hashlib.sha256(body).hexdigest():
                raise PieceRefused(f"piece {piece.index} arrived twice with different bytes")
            return
        with atomic_writer(target) as out:
            out.write(body)

    def is_refused(self, message_id: str) -> bool:
        return (self.folder(message_id) / REFUSED).exists()

    def mark_refused(self, message_id: str, reason: str) -> None:
        with atomic_writer(self.folder(message_id) / REFUSED) as out:
            out.write(reason.encode("utf-8", "replace"))
        for leftover in self.folder(message_id).glob("*.piece"):
            leftover.unlink(missing_ok=True)

    def envelope(self, message_id: str) -> bytes | None:
        path = self.folder(message_id) / ENVELOPE
        return path.read_bytes() if path.exists() else None

    def _plan(self, folder: Path) -> tuple[int, int] | None:
        plan_file = folder / PLAN
        if not plan_file.exists():
            return None
        count, size, _ = plan_file.read_text(encoding="ascii").split(" ", 2)
        return int(count), int(size)

    def _pieces(self, folder: Path) -> dict[int, Path]:
        return {int(name.split(".")[0]): folder / name for name in _piece_names(folder)}

    def complete(self, message_id: str) -> bool:
        """Whether the envelope and as many pieces as the plan states are on disk.

        Asked after every piece: pieces come nearly in order, so while the last one is
        missing the answer is no without listing the folder (a 5 GiB transfer is 5,120
        pieces; a ``glob`` after each made the edge's staging quadratic in the file's
        size), and the names are then counted without making a path of each.
        """
        folder = self.folder(message_id)
        plan = self._plan(folder)
        if plan is None or not (folder / ENVELOPE).exists() or (folder / REFUSED).exists():
            return False
        if not (folder / f"{plan[0]:08d}.piece").exists():
            return False
        return len(_piece_names(folder)) >= plan[0]

    def open_transfer(
        self,
        message_id: str,
        registry: Registry,
        identity: DecryptionIdentity,
        now: datetime,
    ) -> tuple[Opened, bytes, list[Path]]:
        """Check the pieces against the header, then open the container streamed from disk."""
        folder = self.folder(message_id)
        envelope = (folder / ENVELOPE).read_bytes()
        header = claimed_header(envelope)
        plan = self._plan(folder)
        if header is None or plan is None:
            raise EnvelopeError("container", f"transfer {message_id} has no readable envelope")
        pieces = self._pieces(folder)
        total = sum(p.stat().st_size for p in pieces.values())
        check_pieces(header, plan[1], plan[0], pieces.keys(), total)
        files = folder / FILES
        shutil.rmtree(files, ignore_errors=True)
        files.mkdir()
        outputs: list[Path] = []
        handles: list[BinaryIO] = []

        def attachment_out(index: int) -> BinaryIO:
            path = files / str(index)
            outputs.append(path)
            handle = path.open("wb")
            handles.append(handle)
            return handle

        staged = _PieceFiles([pieces[i] for i in sorted(pieces)])
        readers = [io.BytesIO(envelope), cast(BinaryIO, staged)]
        payload = io.BytesIO()
        try:
            opened = open(
                cast(BinaryIO, Chained(readers)),
                registry,
                identity,
                now,
                None,
                None,
                payload,
                attachment_out,
            )
            for handle in handles:
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            staged.close()
            for handle in handles:
                handle.close()
        return opened, payload.getvalue(), outputs

    def remove(self, message_id: str) -> None:
        shutil.rmtree(self.folder(message_id), ignore_errors=True)

    def stale(self, older_than_s: float) -> list[Stale]:
        """Transfer folders older than ``older_than_s`` seconds; ``missing`` empty if complete."""
        found: list[Stale] = []
        if not self.root.exists():
            return found
        cutoff = time.time() - older_than_s
        for folder in self.root.iterdir():
            if not MESSAGE_ID.fullmatch(folder.name) or folder.stat().st_mtime > cutoff:
                continue
            if (folder / REFUSED).exists():
                found.append(Stale(folder.name, None, None, ""))
                continue
            envelope = self.envelope(folder.name)
            header = claimed_header(envelope) if envelope is not None else None
            plan = self._plan(folder)
            held = self._pieces(folder)
            if plan is None:
                missing = "every piece"
            else:
                wanted = sorted(set(range(1, plan[0] + 1)) - set(held))
                missing = f"{describe(wanted)} of {plan[0]}" if wanted else ""
            if envelope is None:
                missing = "the envelope" + (f" and {missing}" if missing else "")
            # Complete but still here: refused or abandoned mid-hand-over; removed quietly.
            found.append(Stale(folder.name, header, envelope, missing))
        return found


class _PieceFiles:
    """The staged pieces read as one stream, each opened when reached and closed once read:
    a 5 GiB transfer is 5,120 pieces, more files than a process may hold open by default
    (1,024), and each open reader keeps its buffer."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = collections.deque(paths)
        self._current: BinaryIO | None = None

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._current is None:
                if not self._paths:
                    return b""
                self._current = self._paths.popleft().open("rb")
            data = self._current.read(size)
            if data or size == 0:
                return data
            self.close()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def write_attachments(target: Path, files: Sequence[ReceivedAttachment]) -> Path:
    """``<stem>.attachments/`` beside ``target``, complete or not at all (built hidden, renamed)."""
    final = target.with_name(f"{target.stem}.attachments")
    if final.exists():
        return final  # a redelivery after the folder was made: it is whole already
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.stem}.attachments."))
    try:
        for file in files:
            name = check_file_name(file.facts.file_name)
            try:  # the edge's staged copy is opened afresh from its pieces on any retry
                os.replace(file.path, building / name)
            except OSError:  # another file system: copy
                with file.path.open("rb") as source, atomic_writer(building / name, 0o640) as out:
                    shutil.copyfileobj(source, out, READ_CHUNK)
        _fsync_folder(building)
        os.replace(building, final)
        _fsync_folder(final.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final


def _piece_names(folder: Path) -> list[str]:
    """``<index>.piece`` names; atomic_writer's temp files start with a dot."""
    return [n for n in os.listdir(folder) if n.endswith(".piece") and not n.startswith(".")]


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
