"""Pieces: each one signed for its transfer and place; the set checked against the header."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pytest
from envelope_keys import NOW, WINDOW, fields, keys, registry

from gateway.core.envelope import AttachmentInput, EnvelopeError, Header, seal, verify
from gateway.core.envelope.pieces import (
    Piece,
    check_pieces,
    describe,
    piece_count,
    sign_piece,
    verify_piece,
)

pytestmark = pytest.mark.unit

SIZE = 64 * 1024
KEY = keys("police").sign
PUBLIC = KEY.public_key()


def piece(index: int = 1, count: int = 3, body: bytes = b"x" * SIZE, **changes: object) -> Piece:
    unsigned = Piece("m-1", "a" * 64, index, count, SIZE, b"")
    return dataclasses.replace(unsigned, signature=sign_piece(KEY, unsigned, body), **changes)


def test_a_signed_piece_verifies_at_its_place() -> None:
    verify_piece(PUBLIC, piece(), b"x" * SIZE)
    verify_piece(PUBLIC, piece(3, body=b"short"), b"short")  # the last may be short


@pytest.mark.parametrize(
    ("claimed", "body", "reason"),
    [
        ({"index": 2}, b"x" * SIZE, "does not verify"),  # moved to another place
        ({"message_id": "m-2"}, b"x" * SIZE, "does not verify"),  # spliced into another transfer
        ({"header_sha256": "b" * 64}, b"x" * SIZE, "does not verify"),
        ({}, b"y" * SIZE, "does not verify"),  # altered bytes
        ({}, b"x" * (SIZE - 1), "is 65535 bytes, not the piece size"),  # short, not last
        ({"index": 4}, b"x" * SIZE, "out of range"),
        ({"piece_size": 10}, b"x" * SIZE, "out of bounds"),
    ],
)
def test_a_piece_that_is_not_what_it_claims_is_refused(
    claimed: dict[str, object], body: bytes, reason: str
) -> None:
    with pytest.raises(EnvelopeError, match=reason) as caught:
        verify_piece(PUBLIC, dataclasses.replace(piece(), **claimed), body)  # type: ignore[arg-type]
    assert caught.value.check == "pieces"


def test_a_piece_signed_by_another_agency_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="does not verify"):
        verify_piece(keys("health").sign.public_key(), piece(), b"x" * SIZE)


def sealed_header(size: int) -> tuple[int, Header]:
    content = bytes(size)
    out = io.BytesIO()
    attachment = AttachmentInput(
        io.BytesIO(content), hashlib.sha256(content).hexdigest(), io.BytesIO()
    )
    header = seal(
        fields(),
        io.BytesIO(b"<x/>"),
        keys("police").signer(),
        [keys("health").recipient()],
        out,
        io.BytesIO(),
        attachments=[attachment],
    )
    verify(out.getvalue(), registry(), NOW, WINDOW, None)
    return header.container_length - header.ciphertext_length, header


def test_the_set_must_be_exactly_what_the_header_calls_for() -> None:
    sections, header = sealed_header(3 * SIZE)
    count = piece_count(sections, SIZE)
    check_pieces(header, SIZE, count, range(1, count + 1), sections)
    with pytest.raises(EnvelopeError, match=f"missing piece 2 of {count}"):
        check_pieces(header, SIZE, count, [1, *range(3, count + 1)], sections)
    with pytest.raises(EnvelopeError, match=f"extra piece {count + 1} beyond"):
        check_pieces(header, SIZE, count, range(1, count + 2), sections)
    with pytest.raises(EnvelopeError, match="the header declares"):
        check_pieces(header, SIZE, count, range(1, count + 1), sections - 1)
    with pytest.raises(EnvelopeError, match="make"):
        check_pieces(header, SIZE, count + 1, range(1, count + 2), sections)


def test_missing_pieces_are_named_in_runs() -> None:
    assert describe([2]) == "piece 2"
    assert describe([3, 7, 8, 9, 12]) == "pieces 3, 7-9, 12"
    assert describe(list(range(1, 40, 2))).endswith(", ...")
