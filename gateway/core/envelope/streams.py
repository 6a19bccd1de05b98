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


class Bounded:
    """A reader that ends after ``limit`` bytes of ``inner``: one section of a container.

    The segment decoder checks for trailing data by reading past the final
    segment; bounded, that read sees the section's end, not the next section.
    """

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._left:
            size = self._left
        data = self._inner.read(size) if size else b""
        self._left -= len(data)
        return data


class Chained:
    """Readers one after another, read as one stream: the sections of a container, in order."""

    def __init__(self, readers: list[BinaryIO]) -> None:
        self._readers = readers

    def read(self, size: int = -1) -> bytes:
        while self._readers:
            data = self._readers[0].read(size)
            if data or size == 0:
                return data
            self._readers.pop(0)
        return b""
