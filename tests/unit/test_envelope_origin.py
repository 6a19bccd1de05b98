"""Origin, integrity, keys, timestamps and replay: what the router checks without keys."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from envelope_keys import (
    NOW,
    WINDOW,
    SeenSet,
    assemble,
    build_container,
    fields,
    keys,
    new_keys,
    registry,
    resign,
    seal_to,
    split,
)

from gateway.core.envelope import (
    EnvelopeError,
    SigningIdentity,
    check_ciphertext,
    open_bytes,
    seal_bytes,
    verify,
)
from gateway.core.envelope.claimed import claimed_header

pytestmark = pytest.mark.unit


def check_of(container: bytes, **kwargs: object) -> str:
    args: dict[str, object] = {"registry": registry(), "now": NOW, "window": WINDOW, "seen": None}
    args.update(kwargs)
    with pytest.raises(EnvelopeError) as err:
        verify(container, **args)  # type: ignore[arg-type]
    return err.value.check


def test_verify_reads_only_the_head_of_a_stream_and_leaves_it_at_the_ciphertext() -> None:
    container = seal_to(b"x" * 3000)
    reader = io.BytesIO(container)
    verified = verify(reader, registry(), NOW, WINDOW, None)
    assert reader.tell() == verified.ciphertext_offset
    assert len(container) - reader.tell() == verified.header.ciphertext_length


def test_a_changed_header_byte_fails_the_signature() -> None:
    header, signature, ciphertext = split(seal_to(b"x"))
    changed = header.replace(b"mash-2025-0001", b"mash-2025-0002")
    assert check_of(assemble(changed, signature, ciphertext)) == "signature"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"<CiphertextLength>", b"<CiphertextLength>" + b"0" * 5000),
        (b'segmentSize="', b'segmentSize="' + b"0" * 5000),
        (b'segmentSize="', b'segmentSize="0'),
    ],
)
def test_a_number_with_leading_zeros_or_thousands_of_digits_is_a_header_error(
    before: bytes, after: bytes
) -> None:
    """Found by tests/fuzz (fuzz_envelope): the XSD took any number of (leading zero) digits,
    and int() raised ValueError past 4,300 of them, from a correctly signed header."""
    header, _, ciphertext = split(seal_to(b"x"))
    padded = header.replace(before, after, 1)
    container = assemble(padded, resign(padded, keys("police").sign), ciphertext)
    assert check_of(container) == "header"


def test_a_changed_signature_byte_fails_the_signature() -> None:
    header, signature, ciphertext = split(seal_to(b"x"))
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(EnvelopeError, match="signature: header signature does not verify with key"):
        verify(assemble(header, flipped, ciphertext), registry(), NOW, WINDOW, None)


def test_a_changed_ciphertext_byte_fails_the_router_digest_check_and_open() -> None:
    container = seal_to(b"x" * 3000)
    tampered = container[:-10] + bytes([container[-10] ^ 1]) + container[-9:]
    verified = verify(tampered, registry(), NOW, WINDOW, None)  # the head is untouched
    with pytest.raises(EnvelopeError) as err:
        check_ciphertext(verified, tampered)
    assert err.value.check == "ciphertext"
    with pytest.raises(EnvelopeError) as err:
        open_bytes(tampered, registry(), keys("health").identity(), NOW, WINDOW, None)
    assert err.value.check == "segments"


def test_the_router_digest_check_accepts_an_untouched_body() -> None:
    container = seal_to(b"x" * 3000)
    check_ciphertext(verify(container, registry(), NOW, WINDOW, None), container)


def test_a_container_cut_or_extended_fails_the_router_length_check() -> None:
    container = seal_to(b"x" * 3000)
    verified = verify(container, registry(), NOW, WINDOW, None)
    for body in (container[:-1], container + b"\x00"):
        with pytest.raises(EnvelopeError, match="header declares") as err:
            check_ciphertext(verified, body)
        assert err.value.check == "ciphertext"


def test_not_a_container_fails_the_container_check() -> None:
    assert check_of(b"<EnvelopeHeader/>") == "container"
    assert check_of(seal_to(b"x")[:40]) == "container"
    assert check_of(b"MASHENV1\xff\xff\xff\xff") == "container"


def test_an_unknown_signing_key_id_fails_the_key_check() -> None:
    without_police = [r for a in ("health",) for r in keys(a).records()]
    assert check_of(seal_to(b"x"), registry=registry(without_police)) == "key"


def test_a_revoked_key_never_verifies_even_for_messages_dated_before_revocation() -> None:
    records = [
        *keys("police").records(revoked_at=NOW + timedelta(days=1), revocation_reason="lost"),
        *keys("health").records(),
    ]
    with pytest.raises(EnvelopeError, match="revoked") as err:
        verify(seal_to(b"x"), registry(records), NOW, WINDOW, None)
    assert err.value.check == "key"


def test_a_rotated_key_verifies_until_it_expires_and_fails_after() -> None:
    old = new_keys("police")
    records = [
        *old.records(not_before=NOW - timedelta(days=400), expires=NOW + timedelta(days=1)),
        *keys("police").records(),
        *keys("health").records(),
    ]

    def sealed_with_old_key(at: object) -> bytes:
        return seal_bytes(fields(created_at=at), b"x", old.signer(), [keys("health").recipient()])

    before = NOW + timedelta(hours=23)
    verify(sealed_with_old_key(before), registry(records), before, WINDOW, None)
    after = NOW + timedelta(days=1, hours=1)
    with pytest.raises(EnvelopeError, match="expired") as err:
        verify(sealed_with_old_key(after), registry(records), after, WINDOW, None)
    assert err.value.check == "key"


def test_a_key_of_another_agency_fails_the_key_check() -> None:
    health = keys("health")
    impostor = SigningIdentity("police", health.sign_id, health.sign)
    container = build_container(fields(), impostor, [keys("health").recipient()], b"x")
    with pytest.raises(EnvelopeError, match="belongs to 'health', not 'police'") as err:
        verify(container, registry(), NOW, WINDOW, None)
    assert err.value.check == "key"


def test_an_expired_timestamp_is_rejected() -> None:
    container = seal_to(b"x", created_at=NOW - timedelta(hours=2))
    assert check_of(container) == "timestamp"


def test_a_timestamp_from_the_future_is_rejected_beyond_the_skew() -> None:
    assert check_of(seal_to(b"x", created_at=NOW + timedelta(minutes=10))) == "timestamp"
    verify(seal_to(b"x", created_at=NOW + timedelta(minutes=4)), registry(), NOW, WINDOW, None)


def test_a_seen_message_id_is_rejected_as_a_replay() -> None:
    container = seal_to(b"x")
    message_id = verify(container, registry(), NOW, WINDOW, SeenSet()).header.fields.message_id
    assert check_of(container, seen=SeenSet(message_id)) == "replay"
    with pytest.raises(EnvelopeError) as err:
        open_bytes(
            container, registry(), keys("health").identity(), NOW, WINDOW, SeenSet(message_id)
        )
    assert err.value.check == "replay"


def test_a_re_signed_header_with_a_comment_is_rejected() -> None:
    header, _, ciphertext = split(seal_to(b"x"))
    commented = header.replace(b"<Purpose>", b"<!-- hi --><Purpose>")
    forged = assemble(commented, resign(commented, keys("police").sign), ciphertext)
    assert check_of(forged) == "header"


def test_a_re_signed_header_missing_a_field_is_rejected() -> None:
    header, _, ciphertext = split(seal_to(b"x"))
    missing = header.replace(b"<Purpose>child-safeguarding</Purpose>", b"")
    forged = assemble(missing, resign(missing, keys("police").sign), ciphertext)
    with pytest.raises(EnvelopeError, match="Purpose") as err:
        verify(forged, registry(), NOW, WINDOW, None)
    assert err.value.check == "header"


def test_a_rejected_container_still_tells_whom_to_notify_but_garbage_does_not() -> None:
    header, signature, ciphertext = split(seal_to(b"x"))
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    claimed = claimed_header(assemble(header, flipped, ciphertext))
    assert claimed is not None
    assert (claimed.fields.sender, claimed.fields.recipients) == ("police", ("health",))
    assert claimed_header(b"MASHENV1\x00\x00\x00\x03abc" + bytes(64)) is None
    assert claimed_header(b"not an envelope") is None
