"""The receiving edge's staging folder: pieces kept once, another plan refused, stale found."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import resource
import time
import uuid
from pathlib import Path

import pytest
from envelope_keys import NOW, fields, keys, registry

from gateway.core.envelope import AttachmentInput, EnvelopeError, seal_message
from gateway.core.envelope.pieces import Piece, piece_count
from gateway.services.transfer_staging import PieceRefused, Staging

pytestmark = pytest.mark.unit

SIZE = 64 * 1024


def transfer(content: bytes) -> tuple[str, bytes, list[tuple[Piece, bytes]]]:
    message = fields(message_id=str(uuid.uuid4()))
    spool, out = io.BytesIO(), io.BytesIO()
    attachment = AttachmentInput(io.BytesIO(content), hashlib.sha256(content).hexdigest(), spool)
    header = seal_message(
        message,
        io.BytesIO(b"<x/>"),
        keys("police").signer(),
        [keys("health").recipient()],
        out,
        io.BytesIO(),
        attachments=[attachment],
    )
    sections = spool.getvalue()
    count = piece_count(len(sections), SIZE)
    pieces = [
        (
            Piece(message.message_id, header.sha256, i + 1, count, SIZE, b""),
            sections[i * SIZE : (i + 1) * SIZE],
        )
        for i in range(count)
    ]
    return message.message_id, out.getvalue(), pieces


def test_a_transfer_staged_in_any_order_opens_whole(tmp_path: Path) -> None:
    content = os.urandom(3 * SIZE + 5)
    message_id, envelope, pieces = transfer(content)
    staging = Staging(tmp_path)
    for piece, body in reversed(pieces):
        staging.stage_piece(piece, body)
        staging.stage_piece(piece, body)  # a redelivery is kept once
        assert not staging.complete(message_id)
    staging.stage_envelope(message_id, envelope)
    assert staging.complete(message_id)
    opened, payload, files = staging.open_transfer(
        message_id, registry(), keys("health").identity(), NOW
    )
    assert payload == b"<x/>"
    assert [f.read_bytes() for f in files] == [content]
    assert opened.attachments[0].plaintext_sha256 == hashlib.sha256(content).hexdigest()
    staging.remove(message_id)
    assert not (tmp_path / message_id).exists()


def test_a_transfer_is_complete_only_with_every_piece_whichever_came_last(
    tmp_path: Path,
) -> None:
    message_id, envelope, pieces = transfer(os.urandom(4 * SIZE))
    staging = Staging(tmp_path)
    staging.stage_envelope(message_id, envelope)
    *first, (last, last_body) = pieces
    for piece, body in first[1:]:
        staging.stage_piece(piece, body)
        assert not staging.complete(message_id)
    staging.stage_piece(last, last_body)
    assert not staging.complete(message_id)  # the last is there, the first is not
    staging.stage_piece(*first[0])
    assert staging.complete(message_id)


def test_a_transfer_of_more_pieces_than_the_process_may_open_files_opens(
    tmp_path: Path,
) -> None:
    content = os.urandom(300 * SIZE)
    message_id, envelope, pieces = transfer(content)
    staging = Staging(tmp_path)
    staging.stage_envelope(message_id, envelope)
    for piece, body in pieces:
        staging.stage_piece(piece, body)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 32, hard))  # fewer than the pieces
    try:
        _, _, files = staging.open_transfer(message_id, registry(), keys("health").identity(), NOW)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [f.read_bytes() for f in files] == [content]


def test_a_piece_with_other_bytes_or_another_plan_is_refused(tmp_path: Path) -> None:
    _, _, pieces = transfer(os.urandom(2 * SIZE))
    staging = Staging(tmp_path)
    first, body = pieces[0]
    staging.stage_piece(first, body)
    with pytest.raises(PieceRefused, match="arrived twice with different bytes"):
        staging.stage_piece(first, b"y" * len(body))
    with pytest.raises(PieceRefused, match="a piece from another transfer"):
        staging.stage_piece(dataclasses.replace(pieces[1][0], count=9), pieces[1][1])
    with pytest.raises(PieceRefused, match="is not a message id"):
        staging.stage_piece(dataclasses.replace(first, message_id="../escape"), body)


def test_a_missing_piece_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    message_id, envelope, pieces = transfer(os.urandom(3 * SIZE))
    staging = Staging(tmp_path)
    staging.stage_envelope(message_id, envelope)
    for piece, body in pieces[:1] + pieces[2:]:
        staging.stage_piece(piece, body)
    with pytest.raises(EnvelopeError, match="missing piece 2 of"):
        staging.open_transfer(message_id, registry(), keys("health").identity(), NOW)


def test_stale_transfers_name_what_is_missing(tmp_path: Path) -> None:
    message_id, envelope, pieces = transfer(os.urandom(3 * SIZE))
    staging = Staging(tmp_path)
    staging.stage_envelope(message_id, envelope)
    staging.stage_piece(*pieces[0])
    assert staging.stale(3600) == []
    old = time.time() - 7200
    os.utime(tmp_path / message_id, (old, old))
    (stale,) = staging.stale(3600)
    assert stale.message_id == message_id
    assert stale.missing == f"pieces 2-{len(pieces)} of {len(pieces)}"
    assert stale.header is not None and stale.header.fields.message_id == message_id
