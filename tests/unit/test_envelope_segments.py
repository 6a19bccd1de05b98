"""Segment integrity: cutting, reordering, duplicating or extending the payload is detected."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import pytest
from envelope_keys import (
    NOW,
    SEGMENT,
    WINDOW,
    assemble,
    build_container,
    fields,
    frames,
    keys,
    registry,
    seal_to,
    split,
)

from gateway.core.envelope import EnvelopeError, open, open_bytes
from gateway.core.envelope.segments import decrypt_segments, encrypt_segments

pytestmark = pytest.mark.unit

PLAINTEXT = bytes(range(256)) * 20 + b"tail"  # five full 1 KiB segments and a final one
KEY = bytes(range(32))
MESSAGE = "6f1d2c3b-4a59-4e8f-9a0b-1c2d3e4f5a6b"


def failure(container: bytes) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as err:
        open_bytes(container, registry(), keys("health").identity(), NOW, WINDOW, None)
    return err.value


def rebuild(edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """The sample container with its framed segments edited."""
    header, signature, ciphertext = split(seal_to(PLAINTEXT))
    return assemble(header, signature, b"".join(edit(frames(ciphertext))))


def test_the_sample_payload_spans_several_segments() -> None:
    assert len(frames(split(seal_to(PLAINTEXT))[2])) == 6


def test_reordered_segments_fail() -> None:
    error = failure(rebuild(lambda s: [s[1], s[0], *s[2:]]))
    assert error.check == "segments"
    assert "segment 0 does not authenticate" in str(error)


def test_a_duplicated_segment_fails() -> None:
    assert failure(rebuild(lambda s: [s[0], s[0], *s[1:-1], s[-1]])).check == "segments"


def test_a_dropped_final_segment_fails_as_truncated() -> None:
    error = failure(rebuild(lambda s: s[:-1]))
    assert error.check == "segments"
    assert "truncated" in str(error)


def test_a_dropped_middle_segment_fails() -> None:
    assert failure(rebuild(lambda s: [s[0], *s[2:]])).check == "segments"


def test_a_container_cut_inside_a_segment_fails_as_truncated() -> None:
    container = seal_to(PLAINTEXT)
    error = failure(container[:-100])
    assert (error.check, "truncated" in str(error)) == ("segments", True)


def test_appended_trailing_data_fails() -> None:
    error = failure(seal_to(PLAINTEXT) + b"\x00")
    assert error.check == "segments"
    assert "trailing data" in str(error)


def test_an_appended_copy_of_the_final_segment_fails() -> None:
    assert failure(rebuild(lambda s: [*s, s[-1]])).check == "segments"


def test_a_segment_length_prefix_beyond_the_segment_size_is_refused_before_reading() -> None:
    huge = (2**31).to_bytes(4, "big")
    error = failure(rebuild(lambda s: [huge + s[0][4:], *s[1:]]))
    assert error.check == "segments"


def test_the_final_segment_is_withheld_until_the_content_signature_verifies() -> None:
    container = build_container(
        fields(),
        keys("police").signer(),
        [keys("health").recipient()],
        PLAINTEXT,
        lambda _digest: bytes(64),
    )
    out = io.BytesIO()
    with pytest.raises(EnvelopeError) as err:
        open(io.BytesIO(container), registry(), keys("health").identity(), NOW, WINDOW, None, out)
    assert err.value.check == "content-signature"
    assert out.getvalue() == PLAINTEXT[: 5 * SEGMENT]


def encrypted(message_id: str, plaintext: bytes) -> bytes:
    body = io.BytesIO()
    encrypt_segments(KEY, message_id, io.BytesIO(plaintext), SEGMENT, lambda _d: bytes(64), body)
    return body.getvalue()


def decrypt(message_id: str, ciphertext: bytes) -> None:
    """Decrypt as if a header had declared exactly these bytes: the layer's own checks only."""
    decrypt_segments(
        KEY,
        message_id,
        io.BytesIO(ciphertext),
        SEGMENT,
        len(ciphertext),
        hashlib.sha256(ciphertext).hexdigest(),
        lambda _digest, _signature: None,
        io.BytesIO(),
    )


def test_a_stream_cut_at_a_segment_boundary_fails_on_the_final_flag_alone() -> None:
    cut = b"".join(frames(encrypted(MESSAGE, PLAINTEXT))[:3])
    with pytest.raises(EnvelopeError, match="segment 2 does not authenticate"):
        decrypt(MESSAGE, cut)


def test_segments_of_another_message_under_the_same_key_do_not_authenticate() -> None:
    decrypt(MESSAGE, encrypted(MESSAGE, PLAINTEXT))
    other = "0b7e3c3e-9a64-4f8e-8f5e-3d2b1a0c9e8f"
    with pytest.raises(EnvelopeError, match="segment 0 does not authenticate"):
        decrypt(other, encrypted(MESSAGE, PLAINTEXT))
