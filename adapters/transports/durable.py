"""Durable file moves and writes for transports that keep files (rename, then fsync both
folders), and the pruning of their archive/."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from adapters.inbound import failed
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now

log = structlog.get_logger("adapters")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move(source: Path, target_dir: Path) -> Path:
    """Rename ``source`` into ``target_dir`` (same file system: atomic) and make it stick."""
    target = target_dir / source.name
    os.rename(source, target)
    fsync_dir(target_dir)
    fsync_dir(source.parent)
    return target


def write_text(target: Path, text: str) -> None:
    """Temp file, fsync, rename, fsync the folder."""
    with atomic_writer(target) as out:
        out.write(text.encode("utf-8"))


DAY_S = 86400.0
PRUNE_EVERY_S = 3600.0


def expired(entries: Iterable[tuple[str, float]], now: float, keep_days: float) -> list[str]:
    """The names, of (name, modified at) in epoch seconds, kept longer than ``keep_days``."""
    cutoff = now - keep_days * DAY_S
    return sorted(name for name, modified in entries if modified < cutoff)


class ArchivePruner:
    """Deletes what a transport's archive/ has kept past ``keep_days``: at start, then hourly.

    archive/ holds personal data the exchange already carries, kept only long
    enough to trace an input to its message ids (storage limitation). A
    failure is counted (stage ``prune``) and tried again an hour later.
    """

    def __init__(self, archive: Path, keep_days: float, agency: str, transport: str) -> None:
        self.archive = archive
        self.keep_days = keep_days
        self.agency = agency
        self.transport = transport
        self._pruned_at = -PRUNE_EVERY_S

    async def when_due(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        try:
            await asyncio.to_thread(self.prune, utc_now().timestamp())
        except OSError as exc:  # tried again in an hour; sending goes on
            failed(self.agency, self.transport, "prune")
            log.error("archive.prune_failed", agency=self.agency, error=exc.strerror)
        self._pruned_at = time.monotonic()

    def prune(self, now: float) -> int:
        """Delete what archive/ has kept past ``keep_days``; how many files."""
        with os.scandir(self.archive) as entries:
            stamped = [(e.name, e.stat().st_mtime) for e in entries if e.is_file()]
        names = expired(stamped, now, self.keep_days)
        for name in names:
            (self.archive / name).unlink(missing_ok=True)
        if names:
            fsync_dir(self.archive)
            log.info("archive.pruned", agency=self.agency, files=len(names))
        return len(names)
