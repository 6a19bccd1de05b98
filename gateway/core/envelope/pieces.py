"""A sealed message with attachments on the broker: its head, then bounded pieces.

The first broker message of a transfer is the container's head and the
payload's section: an ordinary envelope message, routed as any other (its
signed header names every attachment section's length and digest). The
attachment sections that follow in the container are cut into pieces of
``piece_size`` bytes (the last may be shorter), each its own broker message.

Every piece carries the sender's Ed25519 signature over the piece statement:
the message id, the SHA-256 of the signed header, the piece's index, the
number of pieces, the piece size and the SHA-256 of the piece's bytes. So the
router checks each piece as it passes, alone, with no state and no key but
the sender's public one: a piece altered, from another transfer, or claiming
another place fails there and then. What one piece cannot show (one missing,
an extra one, the total length, each section's digest) the receiving edge
checks once it holds them all, before it opens anything
(``check_pieces``); the sections' AES-GCM then checks every byte again.

Why signed pieces and not a running digest at the router: a router that
restarts mid-transfer has lost any running state, and the pieces it acked are
gone from its queue; a signature per piece keeps the router stateless and
crash-safe. Ed25519 costs ~50 us to sign and ~120 us to verify, under 1% of
moving a 1 MiB piece through the broker.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import Header
from gateway.core.envelope.protocol import PIECE_SIGNATURE_LABEL

# bench/README.md ("Attachments: piece size") has the measurements behind it.
DEFAULT_PIECE_SIZE = 1024 * 1024
MIN_PIECE_SIZE = 64 * 1024
MAX_PIECE_SIZE = 16 * 1024 * 1024
_NUMBERS = struct.Struct(">QQQ")


@dataclass(frozen=True)
class Piece:
    """One piece as its broker message states it (nothing here is trusted until verified)."""

    message_id: str
    header_sha256: str
    index: int  # 1-based
    count: int
    piece_size: int
    signature: bytes


def piece_count(sections_length: int, piece_size: int) -> int:
    return -(-sections_length // piece_size)


def piece_statement(piece: Piece, body: bytes) -> bytes:
    return (
        PIECE_SIGNATURE_LABEL
        + piece.message_id.encode("ascii")
        + b"\x00"
        + piece.header_sha256.encode("ascii")
        + b"\x00"
        + _NUMBERS.pack(piece.index, piece.count, piece.piece_size)
        + hashlib.sha256(body).digest()
    )


def sign_piece(key: Ed25519PrivateKey, piece: Piece, body: bytes) -> bytes:
    return key.sign(piece_statement(piece, body))


def verify_piece(key: Ed25519PublicKey, piece: Piece, body: bytes) -> None:
    """The piece is the sender's, for this message and place, and its bytes are unchanged."""
    if not 1 <= piece.index <= piece.count:
        raise EnvelopeError("pieces", f"piece {piece.index} of {piece.count} is out of range")
    if not MIN_PIECE_SIZE <= piece.piece_size <= MAX_PIECE_SIZE:
        raise EnvelopeError("pieces", f"piece size {piece.piece_size} is out of bounds")
    longest = piece.piece_size
    if len(body) > longest or (piece.index < piece.count and len(body) != longest):
        raise EnvelopeError(
            "pieces",
            f"piece {piece.index} of {piece.count} is {len(body)} bytes, "
            f"not the piece size {longest}",
        )
    try:
        key.verify(piece.signature, piece_statement(piece, body))
    except InvalidSignature:
        raise EnvelopeError(
            "pieces",
            f"piece {piece.index} of {piece.count} does not verify for message "
            f"{piece.message_id}: altered, or from another transfer",
        ) from None


def check_pieces(
    header: Header, piece_size: int, count: int, held: Collection[int], total: int
) -> None:
    """Before opening: the pieces held are exactly the ones the signed header calls for."""
    sections = header.container_length - header.ciphertext_length
    expected = piece_count(sections, piece_size)
    if count != expected:
        raise EnvelopeError(
            "pieces",
            f"message {header.fields.message_id}: pieces say {count}, the header's "
            f"{sections} bytes in {piece_size}-byte pieces make {expected}",
        )
    missing = sorted(set(range(1, count + 1)) - set(held))
    if missing:
        raise EnvelopeError("pieces", f"missing {describe(missing)} of {count}")
    extra = sorted(set(held) - set(range(1, count + 1)))
    if extra:
        raise EnvelopeError("pieces", f"extra {describe(extra)} beyond {count}")
    if total != sections:
        raise EnvelopeError(
            "pieces", f"the pieces hold {total} bytes, the header declares {sections}"
        )


def describe(indexes: list[int]) -> str:
    """``pieces 3, 7-12`` for a log line or a receipt: runs collapsed, at most 10 shown."""
    runs: list[str] = []
    start = previous = indexes[0]
    for index in [*indexes[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    shown = ", ".join(runs[:10]) + (", ..." if len(runs) > 10 else "")
    return f"piece{'s' if len(indexes) > 1 else ''} {shown}"
