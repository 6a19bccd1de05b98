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

The router's log (``open_kept``) also keeps its head in the tracking store
after each checkpoint, once the checkpoint is on disk (so the store is never
ahead of the file), under the chain's name: its path relative to the area.
``audit verify`` then catches a file emptied or cut back. The copy moves on
only from the head this writer last kept (a compare-and-set), so a file that
no longer holds the stored head is refused at opening rather than continued,
and a second writer of the same chain name is refused at its checkpoint.
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
    Record,
    checkpoint_link,
    record_link,
)
from gateway.core.envelope import SigningIdentity
from gateway.core.errors import GatewayError
from gateway.core.records import AuditHead
from gateway.store import AuditHeads

DEFAULT_CHECKPOINT_EVERY = 100
FILE_MODE = 0o600
TAIL_CHUNK = 64 * 1024
CHECKPOINT_MARK = b'"kind":"checkpoint"'  # canonical JSON: no spaces, keys sorted


class AuditLogError(GatewayError):
    """The audit file cannot be opened for appending, is locked by another writer, or ends badly."""


class AuditLogBusy(AuditLogError):
    """Another process holds the audit file's lock: a writer that takes turns may wait."""


def default_path(config: AreaConfig) -> Path:
    return config.base_dir / "state" / "audit.jsonl"


def chain_name(config: AreaConfig, path: Path) -> str:
    """The name the store keeps a chain's head under: its file, relative to the area if inside."""
    resolved, base = path.resolve(), config.base_dir.resolve()
    return str(resolved.relative_to(base) if resolved.is_relative_to(base) else resolved)


class _HeadCopy:
    """Where the head goes besides the file, and the last one kept there."""

    def __init__(self, store: AuditHeads, chain: str, kept: AuditHead | None) -> None:
        self.store = store
        self.chain = chain
        self.kept = kept
        self.lock = asyncio.Lock()  # one compare-and-set at a time, in checkpoint order


async def open_kept(
    config: AreaConfig,
    path: Path,
    signer: SigningIdentity,
    store: AuditHeads,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
) -> AuditLog:
    """The log at ``path``, keeping its head in ``store``; refused if the file lost that head."""
    chain = chain_name(config, path)
    copy = _HeadCopy(store, chain, await store.audit_head(chain))
    return await asyncio.to_thread(AuditLog, path, signer, checkpoint_every, copy)


class AuditLog:
    """Appends decisions and checkpoints; thread-safe, so async callers may use ``to_thread``."""

    def __init__(
        self,
        path: Path,
        signer: SigningIdentity,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        copy: _HeadCopy | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.path = path
        self._signer = signer
        self._every = checkpoint_every
        self._copy = copy
        self._signed: tuple[ChainHead, datetime] | None = None  # the last checkpoint written
        self._lock = threading.Lock()
        self._fd = _open_exclusive(path)
        try:
            self._head, self._unsigned, tail = _resume(path)
            if copy is not None and copy.kept is not None:
                _check_holds(path, self._head, tail, copy.kept)
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

    def append(self, decision: Record, now: datetime) -> None:
        """Write one record durably, then a checkpoint if ``checkpoint_every`` are unsigned."""
        self.append_all([(decision, now)])

    def append_all(self, decisions: Sequence[tuple[Record, datetime]]) -> None:
        """Write (decision or operator action, time) pairs in order with one fsync.

        The head is not copied to the store here (this may run on any thread):
        ``write`` does both.
        """
        with self._lock:
            links = []
            head = self._head
            signed = None
            for decision, now in decisions:
                links.append(record_link(head, now, decision))
                head = links[-1].head
                self._unsigned += 1
                if self._unsigned >= self._every:
                    links.append(checkpoint_link(head, now, self._signer))
                    head = links[-1].head
                    signed = (head, now)
                    self._unsigned = 0
            self._write(links, signed)

    async def write(self, decisions: Sequence[tuple[Record, datetime]]) -> None:
        """``append_all`` off the event loop, then the head to the store if a checkpoint was due."""
        await asyncio.to_thread(self.append_all, decisions)
        await self.keep_head()

    def close(self, now: datetime) -> None:
        """Sign whatever is unsigned, then release the file for the next writer."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                if self._unsigned:
                    link = checkpoint_link(self._head, now, self._signer)
                    self._write([link], (link.head, now))
                    self._unsigned = 0
            finally:
                os.close(self._fd)  # closing the descriptor releases the flock
                self._fd = -1

    async def aclose(self, now: datetime) -> None:
        """``close``, then its checkpoint's head to the store."""
        await asyncio.to_thread(self.close, now)
        await self.keep_head()

    async def keep_head(self) -> None:
        """Copy the last checkpoint's head to the store, unless it is there already.

        Raises AuditLogError if the store's head is no longer the one this
        writer kept last: another process writes a chain of the same name.
        """
        copy = self._copy
        if copy is None:
            return
        async with copy.lock:
            signed = self._signed  # one attribute read: no need to wait for a writing thread
            if signed is None or (copy.kept is not None and copy.kept.seq >= signed[0].seq):
                return
            head = AuditHead(copy.chain, signed[0].seq, signed[0].hash, signed[1])
            if not await copy.store.keep_audit_head(head, copy.kept):
                raise AuditLogError(
                    f"{self.path}: the store's head of chain {copy.chain} moved under this "
                    "writer: another router writes a chain of the same name; give each router "
                    "its own `run --audit-log FILE`"
                )
            copy.kept = head

    def _write(self, links: Sequence[Link], signed: tuple[ChainHead, datetime] | None) -> None:
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
        if signed is not None:
            self._signed = signed


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
        raise AuditLogBusy(f"{path}: another process is writing this audit log") from None
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return fd


def _resume(path: Path) -> tuple[ChainHead, int, dict[int, str]]:
    """The head to continue from, how many records since the last checkpoint, and the hashes
    of the records read (from the last checkpoint on) by place."""
    tail = _last_lines(path)
    if not tail:
        return GENESIS, 0, {}
    unsigned = 0
    head: ChainHead | None = None
    hashes: dict[int, str] = {}
    for offset, text in enumerate(reversed(tail)):
        try:
            record = json.loads(text)
            kind, seq, digest = record["kind"], int(record["seq"]), str(record["hash"])
        except (ValueError, TypeError, KeyError):
            raise AuditLogError(
                f"{path}: line {offset + 1} from the end is not an audit record; "
                "run `mash-gateway audit verify` before writing to it again"
            ) from None
        hashes[seq] = digest
        if head is None:
            head = ChainHead(seq, digest)
        if kind == CHECKPOINT:
            return head, unsigned, hashes
        unsigned += 1
    assert head is not None
    return head, unsigned, hashes


def _check_holds(path: Path, head: ChainHead, tail: dict[int, str], kept: AuditHead) -> None:
    """Refuse to continue a file that no longer holds the head the store kept.

    Continuing would fork the chain from what the store vouches for. Only the
    tail is at hand here (an earlier kept head, when a store write failed, is
    checked by ``audit verify``).
    """
    found = tail.get(kept.seq)
    if head.seq >= kept.seq and found in (None, kept.hash):
        return
    store = f"the store's head of this chain is record {kept.seq} (hash {kept.hash})"
    if head.seq == 0:
        now = "the file is empty"
    elif head.seq < kept.seq:
        now = f"the file ends at record {head.seq}"
    else:
        now = f"the file's record {kept.seq} has another hash"
    raise AuditLogError(
        f"{path}: {store}, but {now}: the file was emptied, cut back or replaced. Keep it as "
        "evidence (`mash-gateway audit verify` names what is missing) and start the router "
        "with a new chain: `run --audit-log FILE` with a file name not used before"
    )


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
                await self.log.write([(d, at) for d, at, _ in batch])
            except Exception as exc:  # every caller of the batch learns it is not durable
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
