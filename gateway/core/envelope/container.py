"""The container framing: MAGIC | u32 header length | header | signature | segments.

The router reads only the head (up to the signature); the segments follow
as the "ciphertext" whose length and SHA-256 the header declares.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.protocol import LENGTH_BYTES, MAGIC, MAX_HEADER_BYTES, SIGNATURE_BYTES
from gateway.core.envelope.streams import read_up_to

_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class ContainerHead:
    header_bytes: bytes
    signature: bytes

    @property
    def size(self) -> int:
        """Where the ciphertext starts in the container."""
        return len(MAGIC) + LENGTH_BYTES + len(self.header_bytes) + SIGNATURE_BYTES


def encode_head(header_bytes: bytes, signature: bytes) -> bytes:
    return MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes + signature


def read_head(reader: BinaryIO) -> ContainerHead:
    """Read the head and leave ``reader`` at the first segment."""
    prefix = read_up_to(reader, len(MAGIC) + LENGTH_BYTES)
    if prefix[: len(MAGIC)] != MAGIC:
        raise EnvelopeError("container", "does not start with MASHENV1")
    if len(prefix) < len(MAGIC) + LENGTH_BYTES:
        raise EnvelopeError("container", "ends inside the header length")
    (length,) = _LENGTH.unpack_from(prefix, len(MAGIC))
    if length > MAX_HEADER_BYTES:
        raise EnvelopeError("container", f"header length {length} exceeds {MAX_HEADER_BYTES}")
    header_bytes = read_up_to(reader, length)
    signature = read_up_to(reader, SIGNATURE_BYTES)
    if len(header_bytes) < length or len(signature) < SIGNATURE_BYTES:
        raise EnvelopeError("container", "ends inside the header or its signature")
    return ContainerHead(header_bytes, signature)


def split_head(data: bytes) -> ContainerHead:
    return read_head(io.BytesIO(data))


def encode_length(length: int) -> bytes:
    return _LENGTH.pack(length)


def decode_length(prefix: bytes) -> int:
    (length,) = _LENGTH.unpack(prefix)
    return int(length)
