"""Reading exactly n bytes from a stream that may return short reads (pipes, sockets)."""

from __future__ import annotations

from typing import BinaryIO


def read_up_to(reader: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at end of stream."""
    first = reader.read(size)
    if len(first) == size or not first:
        return first
    parts = [first]
    missing = size - len(first)
    while missing:
        more = reader.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)
