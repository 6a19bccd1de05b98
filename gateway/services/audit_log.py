"""The audit trail on disk: an append-only JSON-lines file with one writer.

The shell around ``audit_chain``. Each record is written with a single
``write`` on an ``O_APPEND`` descriptor and fsync-ed before ``append``
returns, so a decision the router acted on is on disk. An exclusive
``flock`` keeps a second writer out: two writers would fork the chain. A
checkpoint, the chain head signed with the gateway principal's key, follows
every ``checkpoint_every`` records and is written on close, so a closed log
is signed to its last line.

On reopening, the chain continues from the last line. A last line that does
not parse (a torn write, or tampering) is refused rather than chained past:
``mash-gateway audit verify`` says what is wrong with it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from gateway.config.area_config import AreaConfig
from gateway.core.audit_chain import (
    CHECKPOINT,
    GENESIS,
    ChainHead,
    Decision,
    Link,
    checkpoint_link,
    decision_link,
)
from gateway.core.envelope import SigningIdentity
from gateway.core.errors import GatewayError

DEFAULT_CHECKPOINT_EVERY = 100
FILE_MODE = 0o600
TAIL_CHUNK = 64 * 1024
CHECKPOINT_MARK = b'"kind":"checkpoint"'  # canonical JSON: no spaces, keys sorted


class AuditLogError(GatewayError):
    """The audit file cannot be opened for appending, is locked by another writer, or ends badly."""


def default_path(config: AreaConfig) -> Path:
    return config.base_dir / "state" / "audit.jsonl"


class AuditLog:
    """Appends decisions and checkpoints; thread-safe, so async callers may use ``to_thread``."""

    def __init__(
        self,
        path: Path,
        signer: SigningIdentity,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.path = path
        self._signer = signer
        self._every = checkpoint_every
        self._lock = threading.Lock()
        self._fd = _open_exclusive(path)
        try:
            self._head, self._unsigned = _resume(path)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def head(self) -> ChainHead:
        return self._head

    def use_signer(self, signer: SigningIdentity) -> None:
        """Sign later checkpoints with a rotated gateway key; earlier ones keep their key id."""
        with self._lock:
            self._signer = signer

    def append(self, decision: Decision, now: datetime) -> None:
        """Write one decision durably, then a checkpoint if ``checkpoint_every`` are unsigned."""
        self.append_all([(decision, now)])

    def append_all(self, decisions: Sequence[tuple[Decision, datetime]]) -> None:
        """Write (decision, time) pairs in order with one fsync: a batch costs one flush."""
        with self._lock:
            links = []
            head = self._head
            for decision, now in decisions:
                links.append(decision_link(head, now, decision))
                head = links[-1].head
                self._unsigned += 1
                if self._unsigned >= self._every:
                    links.append(checkpoint_link(head, now, self._signer))
                    head = links[-1].head
                    self._unsigned = 0
            self._write(links)

    def close(self, now: datetime) -> None:
        """Sign whatever is unsigned, then release the file for the next writer."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                if self._unsigned:
                    self._write([checkpoint_link(self._head, now, self._signer)])
                    self._unsigned = 0
            finally:
                os.close(self._fd)  # closing the descriptor releases the flock
                self._fd = -1

    def _write(self, links: Sequence[Link]) -> None:
        if self._fd < 0:
            raise AuditLogError(f"{self.path}: the audit log is closed")
        if not links:
            return
        data = "".join(link.line for link in links).encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):
            raise AuditLogError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fsync(self._fd)
        self._head = links[-1].head


def _open_exclusive(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise AuditLogError(f"{path}: cannot open the audit log: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AuditLogError(f"{path}: another process is writing this audit log") from None
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return fd


def _resume(path: Path) -> tuple[ChainHead, int]:
    """The head to continue from, and how many records since the last checkpoint."""
    tail = _last_lines(path)
    if not tail:
        return GENESIS, 0
    unsigned = 0
    head: ChainHead | None = None
    for offset, text in enumerate(reversed(tail)):
        try:
            record = json.loads(text)
            kind, seq, digest = record["kind"], int(record["seq"]), str(record["hash"])
        except (ValueError, TypeError, KeyError):
            raise AuditLogError(
                f"{path}: line {offset + 1} from the end is not an audit record; "
                "run `mash-gateway audit verify` before writing to it again"
            ) from None
        if head is None:
            head = ChainHead(seq, digest)
        if kind == CHECKPOINT:
            return head, unsigned
        unsigned += 1
    assert head is not None
    return head, unsigned


def _last_lines(path: Path) -> list[str]:
    """The lines from the last checkpoint (or the start) to the end, read from the end."""
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        buffer = b""
        position = end
        while position > 0:
            step = min(TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            buffer = handle.read(step) + buffer
            first_newline = buffer.find(b"\n")
            if first_newline >= 0 and buffer.find(CHECKPOINT_MARK, first_newline + 1) >= 0:
                break  # a whole checkpoint line is in the buffer
    if buffer and not buffer.endswith(b"\n"):
        raise AuditLogError(
            f"{path}: the last line is incomplete (a torn write?); "
            "run `mash-gateway audit verify` before writing to it again"
        )
    lines = buffer.decode("utf-8", errors="replace").splitlines()
    return lines if position == 0 else lines[1:]  # the first may be a partial line


class GroupCommit:
    """Writes the decisions of concurrent callers together: one write and one fsync a batch.

    Each caller returns once its own record is durable, so "audited before
    the change it records" still holds; while one batch is on its way to
    disk, the next callers' records gather for the next. Under load the
    router's fsyncs per message fall from one per record to a fraction.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._pending: list[tuple[Decision, datetime, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append_all(self, decisions: Sequence[Decision], now: datetime) -> None:
        """Return once ``decisions`` are durable: in order, and in one batch."""
        if not decisions:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.extend((decision, now, done) for decision in decisions)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await done

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self.log.append_all, [(d, at) for d, at, _ in batch])
            except Exception as exc:  # every caller of the batch learns it is not durable
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
