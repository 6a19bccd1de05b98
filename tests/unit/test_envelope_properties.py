"""Properties over arbitrary inputs: any payload round-trips; any flipped byte is caught."""

from __future__ import annotations

import pytest
from envelope_keys import NOW, WINDOW, keys, registry, seal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.envelope import EnvelopeError, check_ciphertext, open_bytes, verify

pytestmark = pytest.mark.unit

SAMPLE = seal_to(bytes(range(256)) * 10, recipients=("health", "probation"))


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=12_000), segment_size=st.integers(1024, 4096))
def test_any_payload_round_trips_at_any_segment_size(payload: bytes, segment_size: int) -> None:
    container = seal_to(payload, segment_size=segment_size)
    _, out = open_bytes(container, registry(), keys("health").identity(), NOW, WINDOW, None)
    assert out == payload


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(SAMPLE) - 1), mask=st.integers(1, 255))
def test_flipping_any_byte_of_the_container_fails_verify_or_open(position: int, mask: int) -> None:
    flipped = bytearray(SAMPLE)
    flipped[position] ^= mask
    container = bytes(flipped)
    with pytest.raises(EnvelopeError):
        open_bytes(container, registry(), keys("health").identity(), NOW, WINDOW, None)
    with pytest.raises(EnvelopeError):  # the router, without keys, catches it too
        check_ciphertext(verify(container, registry(), NOW, WINDOW, None), container)
