"""How a piece of a transfer (gateway/core/envelope/pieces.py) is labelled on the broker.

The AMQP headers name the transfer (the message id), the piece's place and
the sender's signature; the body is the piece's bytes. Nothing in the
headers is trusted until the signature verifies. ``correlation_id`` is set
as on the envelope message, so the router takes a transfer's pieces after
its envelope, in the case's order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import FieldValue

from gateway.core.envelope.pieces import Piece
from gateway.core.errors import GatewayError

TRANSFER = "x-mash-transfer"
HEADER_SHA256 = "x-mash-header-sha256"
INDEX = "x-mash-piece"
COUNT = "x-mash-pieces"
PIECE_SIZE = "x-mash-piece-size"
SIGNATURE = "x-mash-piece-signature"
SIGNING_KEY = "x-mash-signing-key"
PIECE_TYPE = "Piece"  # the broker message's type property


class BadPieceHeaders(GatewayError):
    """A broker message that says it is a piece but does not say of what, or where."""


def is_piece(headers: Mapping[str, Any] | None) -> bool:
    return bool(headers) and TRANSFER in (headers or {})


def encode(piece: Piece, signing_key_id: str) -> dict[str, FieldValue]:
    return {
        TRANSFER: piece.message_id,
        HEADER_SHA256: piece.header_sha256,
        INDEX: piece.index,
        COUNT: piece.count,
        PIECE_SIZE: piece.piece_size,
        SIGNATURE: base64.b64encode(piece.signature).decode("ascii"),
        SIGNING_KEY: signing_key_id,
    }


def decode(headers: Mapping[str, Any]) -> tuple[Piece, str]:
    """The piece and the signing key id its headers state; refused if any is malformed."""
    try:
        piece = Piece(
            message_id=_text(headers[TRANSFER]),
            header_sha256=_text(headers[HEADER_SHA256]),
            index=int(headers[INDEX]),
            count=int(headers[COUNT]),
            piece_size=int(headers[PIECE_SIZE]),
            signature=base64.b64decode(_text(headers[SIGNATURE]), validate=True),
        )
        return piece, _text(headers[SIGNING_KEY])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BadPieceHeaders(f"piece headers are malformed: {exc!r}") from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii")
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} where text belongs")
    return value
