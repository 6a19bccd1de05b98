"""Attachments: each file in its own section, checked by digest without keys, opened with them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import pytest
from envelope_keys import NOW, SEGMENT, WINDOW, fields, keys, registry

from gateway.core.envelope import (
    AttachmentInput,
    EnvelopeError,
    HeaderFields,
    Opened,
    open,
    seal,
    verify,
)
from gateway.core.envelope.container import split_head

pytestmark = pytest.mark.unit

PAYLOAD = b"<InformationResponse>...</InformationResponse>" * 40
FILES = (b"%PDF-1.7 discharge letter" * 200, b"", bytes(range(256)) * (3 * SEGMENT // 256 + 1))


def sealed(
    files: Sequence[bytes] = FILES,
    declared: Sequence[str] | None = None,
    message: HeaderFields | None = None,
) -> bytes:
    digests = declared or [hashlib.sha256(f).hexdigest() for f in files]
    inputs = [
        AttachmentInput(io.BytesIO(f), d, io.BytesIO()) for f, d in zip(files, digests, strict=True)
    ]
    out = io.BytesIO()
    seal(
        message or fields(),
        io.BytesIO(PAYLOAD),
        keys("police").signer(),
        [keys("health").recipient()],
        out,
        io.BytesIO(),
        SEGMENT,
        inputs,
    )
    return out.getvalue()


def opened(container: bytes, agency: str = "health") -> tuple[Opened, bytes, dict[int, bytes]]:
    files: dict[int, io.BytesIO] = {}

    def attachment_out(index: int) -> io.BytesIO:
        files[index] = io.BytesIO()
        return files[index]

    out = io.BytesIO()
    result = open(
        io.BytesIO(container),
        registry(),
        keys(agency).identity(),
        NOW,
        WINDOW,
        None,
        out,
        attachment_out,  # type: ignore[arg-type]
    )
    return result, out.getvalue(), {i: f.getvalue() for i, f in files.items()}


def test_payload_and_every_file_round_trip_with_their_digests() -> None:
    result, payload, files = opened(sealed())
    assert payload == PAYLOAD
    assert files == {1: FILES[0], 2: FILES[1], 3: FILES[2]}
    assert [a.plaintext_sha256 for a in result.attachments] == [
        hashlib.sha256(f).hexdigest() for f in FILES
    ]
    assert [a.plaintext_length for a in result.attachments] == [len(f) for f in FILES]


def test_the_header_names_each_section_and_the_router_checks_them_without_keys() -> None:
    container = sealed()
    verified = verify(container, registry(), NOW, WINDOW, None)
    header = verified.header
    assert len(header.attachments) == len(FILES)
    start = verified.ciphertext_offset + header.ciphertext_length
    for sealed_file in header.attachments:
        section = container[start : start + sealed_file.ciphertext_length]
        assert hashlib.sha256(section).hexdigest() == sealed_file.ciphertext_sha256
        start += sealed_file.ciphertext_length
    assert start == len(container)
    assert header.container_length == len(container) - verified.ciphertext_offset


def test_no_file_bytes_appear_in_the_clear() -> None:
    container = sealed()
    assert FILES[0][:32] not in container
    assert b"discharge" not in split_head(container).header_bytes


def test_a_file_that_changed_after_it_was_named_is_refused_while_sealing() -> None:
    wrong = ["0" * 64, hashlib.sha256(FILES[1]).hexdigest(), hashlib.sha256(FILES[2]).hexdigest()]
    with pytest.raises(EnvelopeError, match="attachment 1: its bytes do not match") as caught:
        sealed(declared=wrong)
    assert caught.value.check == "attachment"


def test_an_altered_attachment_byte_fails_its_section() -> None:
    container = bytearray(sealed())
    container[-10] ^= 1
    with pytest.raises(EnvelopeError) as caught:
        opened(bytes(container))
    assert caught.value.check in {"segments", "ciphertext"}


def test_swapped_sections_do_not_open() -> None:
    """Each section is bound to its index: moving the third file's bytes into the first fails."""
    files = (b"a" * 3000, b"b" * 3000)
    container = sealed(files)
    verified = verify(container, registry(), NOW, WINDOW, None)
    start = verified.ciphertext_offset + verified.header.ciphertext_length
    first, second = (a.ciphertext_length for a in verified.header.attachments)
    swapped = (
        container[:start]
        + container[start + first : start + first + second]
        + container[start : start + first]
    )
    with pytest.raises(EnvelopeError):
        opened(swapped)


def test_a_section_from_another_message_does_not_open() -> None:
    """Spliced: same sizes, another message's bytes; the header's digest catches it."""
    files = (b"x" * 5000,)
    one, other = sealed(files), sealed(files)
    head = verify(one, registry(), NOW, WINDOW, None)
    start = head.ciphertext_offset + head.header.ciphertext_length
    other_head = verify(other, registry(), NOW, WINDOW, None)
    other_start = other_head.ciphertext_offset + other_head.header.ciphertext_length
    with pytest.raises(EnvelopeError) as caught:
        opened(one[:start] + other[other_start:])
    assert caught.value.check in {"segments", "ciphertext"}


def test_a_cut_or_extended_container_is_refused() -> None:
    container = sealed()
    with pytest.raises(EnvelopeError, match="segments"):
        opened(container[:-1])
    with pytest.raises(EnvelopeError, match="trailing data after the last section"):
        opened(container + b"\x00")


def test_an_opener_with_nowhere_to_put_files_is_refused_not_silently_short() -> None:
    container = sealed()
    with pytest.raises(EnvelopeError, match="carries 3 attachment"):
        open(
            io.BytesIO(container),
            registry(),
            keys("health").identity(),
            NOW,
            None,
            None,
            io.BytesIO(),
        )


def test_attachments_open_only_for_the_listed_recipients() -> None:
    with pytest.raises(EnvelopeError) as caught:
        opened(sealed(), agency="probation")
    assert caught.value.check == "recipient"
