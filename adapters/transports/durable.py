"""Durable file moves and writes for transports that keep files: rename, then fsync both folders."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.infra.atomic import atomic_writer


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
