"""The payload: AES-256-GCM over fixed-size segments, streamed with bounded memory.

Each segment's nonce and AAD carry its index and a final flag (and the AAD
the message id), so dropping, reordering, duplicating or appending segments
fails authentication. The final segment also carries the sender's content
signature, checked before its plaintext is released.

The ciphertext is the framed segment section (u32 length | ciphertext+tag,
repeated): its length and SHA-256 are what the header declares, so anyone
can check them without the key.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.envelope.container import decode_length, encode_length
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.protocol import LENGTH_BYTES, SEGMENT_LABEL, SIGNATURE_BYTES, TAG_BYTES
from gateway.core.envelope.streams import read_up_to

_INDEX = struct.Struct(">QB")


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _aad(message_id: str, index: int, final: bool) -> bytes:
    return SEGMENT_LABEL + message_id.encode("ascii") + b"\x00" + _INDEX.pack(index, final)


@dataclass(frozen=True)
class SealedPayload:
    ciphertext_sha256: str
    ciphertext_length: int


@dataclass(frozen=True)
class OpenedPayload:
    plaintext_sha256: str
    plaintext_length: int
    ciphertext_sha256: str
    content_signature: bytes


def encrypt_segments(
    content_key: bytes,
    message_id: str,
    plaintext: BinaryIO,
    segment_size: int,
    sign: Callable[[bytes], bytes],
    out: IO[bytes],
) -> SealedPayload:
    """Encrypt ``plaintext`` into framed segments on ``out``.

    ``sign`` receives the plaintext's SHA-256 and returns the content signature
    placed in the final segment. One segment of read-ahead tells which is final.
    """
    aead = AESGCM(content_key)
    plaintext_hash = hashlib.sha256()
    ciphertext_hash = hashlib.sha256()
    length = 0
    index = 0
    chunk = read_up_to(plaintext, segment_size)
    while True:
        ahead = read_up_to(plaintext, segment_size) if len(chunk) == segment_size else b""
        final = not ahead
        plaintext_hash.update(chunk)
        if final:
            chunk += sign(plaintext_hash.digest())
        sealed = aead.encrypt(_nonce(index, final), chunk, _aad(message_id, index, final))
        prefix = encode_length(len(sealed))
        for part in (prefix, sealed):
            out.write(part)
            ciphertext_hash.update(part)
        length += len(prefix) + len(sealed)
        if final:
            return SealedPayload(ciphertext_hash.hexdigest(), length)
        chunk = ahead
        index += 1


def decrypt_segments(
    content_key: bytes,
    message_id: str,
    source: BinaryIO,
    segment_size: int,
    ciphertext_length: int,
    ciphertext_sha256: str,
    check_content: Callable[[bytes, bytes], None],
    out: BinaryIO,
) -> OpenedPayload:
    """Decrypt framed segments from ``source`` into ``out``.

    Segments before the final one are written as they authenticate; if this
    raises, ``out`` holds a partial plaintext the caller must discard. The
    final segment's bytes are written only after the ciphertext digest and
    ``check_content(plaintext_sha256, signature)`` have passed.
    """
    aead = AESGCM(content_key)
    plaintext_hash = hashlib.sha256()
    ciphertext_hash = hashlib.sha256()
    plaintext_length = 0
    consumed = 0
    index = 0
    while True:
        prefix = read_up_to(source, LENGTH_BYTES)
        if len(prefix) < LENGTH_BYTES:
            raise EnvelopeError(
                "segments",
                f"truncated: container ends after {consumed} of {ciphertext_length} "
                "ciphertext bytes",
            )
        size = decode_length(prefix)
        end = consumed + LENGTH_BYTES + size
        if end > ciphertext_length:
            raise EnvelopeError(
                "segments", f"segment {index} overruns the declared {ciphertext_length} bytes"
            )
        final = end == ciphertext_length
        if final:
            allowed = (
                TAG_BYTES + SIGNATURE_BYTES <= size <= segment_size + TAG_BYTES + SIGNATURE_BYTES
            )
        else:
            allowed = size == segment_size + TAG_BYTES
        if not allowed:
            raise EnvelopeError("segments", f"segment {index} has a bad length {size}")
        sealed = read_up_to(source, size)
        if len(sealed) < size:
            raise EnvelopeError("segments", f"truncated inside segment {index}")
        ciphertext_hash.update(prefix)
        ciphertext_hash.update(sealed)
        try:
            chunk = aead.decrypt(_nonce(index, final), sealed, _aad(message_id, index, final))
        except InvalidTag:
            raise EnvelopeError(
                "segments",
                f"segment {index} does not authenticate (tampered, reordered, duplicated "
                "or cut short)",
            ) from None
        if not final:
            plaintext_hash.update(chunk)
            plaintext_length += len(chunk)
            out.write(chunk)
            consumed = end
            index += 1
            continue
        if source.read(1):
            raise EnvelopeError("segments", "trailing data after the final segment")
        if ciphertext_hash.hexdigest() != ciphertext_sha256:
            raise EnvelopeError("ciphertext", "SHA-256 does not match the header")
        last, signature = chunk[:-SIGNATURE_BYTES], chunk[-SIGNATURE_BYTES:]
        plaintext_hash.update(last)
        check_content(plaintext_hash.digest(), signature)
        out.write(last)
        return OpenedPayload(
            plaintext_sha256=plaintext_hash.hexdigest(),
            plaintext_length=plaintext_length + len(last),
            ciphertext_sha256=ciphertext_sha256,
            content_signature=signature,
        )
