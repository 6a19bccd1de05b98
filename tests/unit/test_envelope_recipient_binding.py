"""Recipient binding and plaintext non-repudiation.

The header signature fixes the recipient list for the router; the content
signature inside the ciphertext fixes it for the reader, together with the
plaintext, so neither a relay nor a recipient can re-address the content.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidSignature
from envelope_keys import (
    NOW,
    SEGMENT,
    WINDOW,
    assemble,
    build_container,
    fields,
    keys,
    registry,
    resign,
    seal_to,
    split,
)

from gateway.core.envelope import EnvelopeError, open_bytes, verify
from gateway.core.envelope.envelope_error import Check
from gateway.core.envelope.header import parse_header
from gateway.core.envelope.segments import decrypt_segments, encrypt_segments
from gateway.core.envelope.statement import content_statement
from gateway.core.envelope.wrap import unwrap_content_key

pytestmark = pytest.mark.unit

PLAINTEXT = b"<InformationResponse>records found</InformationResponse>" * 40


def open_check(container: bytes, agency: str) -> Check:
    with pytest.raises(EnvelopeError) as err:
        open_bytes(container, registry(), keys(agency).identity(), NOW, WINDOW, None)
    return err.value.check


def edit_header(edit: Callable[[bytes], bytes]) -> bytes:
    """A container for health and probation whose header bytes were edited in transit."""
    header, signature, ciphertext = split(seal_to(PLAINTEXT, recipients=("health", "probation")))
    edited = edit(header)
    assert edited != header
    return assemble(edited, signature, ciphertext)


def without_probation(header: bytes) -> bytes:
    start = header.index(b'<Recipient agency="probation"')
    end = header.index(b"</Recipient>", start) + len(b"</Recipient>")
    return header[:start] + header[end:]


def recipient_element(agency: str) -> bytes:
    header = split(seal_to(PLAINTEXT, recipients=(agency,)))[0]
    start = header.index(b"<Recipient ")
    return header[start : header.index(b"</Recipient>") + len(b"</Recipient>")]


def test_a_swapped_recipient_fails_the_header_signature() -> None:
    swapped = edit_header(lambda h: h.replace(b'agency="probation"', b'agency="housing"'))
    with pytest.raises(EnvelopeError) as err:
        verify(swapped, registry(), NOW, WINDOW, None)
    assert err.value.check == "signature"


def test_an_added_recipient_fails_the_header_signature() -> None:
    housing = recipient_element("housing")
    added = edit_header(lambda h: h.replace(b"</Recipients>", housing + b"</Recipients>"))
    with pytest.raises(EnvelopeError) as err:
        verify(added, registry(), NOW, WINDOW, None)
    assert err.value.check == "signature"


def test_a_removed_recipient_fails_the_header_signature() -> None:
    removed = edit_header(without_probation)
    with pytest.raises(EnvelopeError) as err:
        verify(removed, registry(), NOW, WINDOW, None)
    assert err.value.check == "signature"


def test_a_recipient_list_changed_even_by_the_sender_key_fails_the_content_signature() -> None:
    police = keys("police")
    mid_fields = fields(recipients=("health",))

    def signed_for_health_and_probation(digest: bytes) -> bytes:
        statement = content_statement(
            mid_fields.message_id, "police", ("health", "probation"), digest
        )
        return police.sign.sign(statement)

    container = build_container(
        mid_fields,
        police.signer(),
        [keys("health").recipient()],
        PLAINTEXT,
        signed_for_health_and_probation,
    )
    verify(container, registry(), NOW, WINDOW, None)  # the header itself is genuine
    assert open_check(container, "health") == "content-signature"


def lift_content(container: bytes) -> tuple[bytes, bytes]:
    """What health holds after opening: the plaintext and police's content signature."""
    opened, plaintext = open_bytes(
        container, registry(), keys("health").identity(), NOW, WINDOW, None
    )
    return plaintext, opened.content_signature


def test_a_recipient_cannot_re_address_the_content_in_the_senders_name() -> None:
    original = seal_to(PLAINTEXT)
    plaintext, content_signature = lift_content(original)
    readdressed = fields(recipients=("probation",), message_id=parse_message_id(original))
    health = keys("health")
    forged = build_container(
        readdressed,
        keys("police").signer(),
        [keys("probation").recipient()],
        plaintext,
        lambda _digest: content_signature,
    )
    header, _, ciphertext = split(forged)
    # health has no police key: it can only sign the header with its own.
    forged = assemble(header, resign(header, health.sign), ciphertext)
    assert open_check(forged, "probation") == "signature"


def test_a_recipient_re_sending_as_itself_cannot_carry_the_senders_content_signature() -> None:
    original = seal_to(PLAINTEXT)
    plaintext, content_signature = lift_content(original)
    forged = build_container(
        fields(sender="health", recipients=("probation",), message_id=parse_message_id(original)),
        keys("health").signer(),
        [keys("probation").recipient()],
        plaintext,
        lambda _digest: content_signature,
    )
    verify(forged, registry(), NOW, WINDOW, None)
    assert open_check(forged, "probation") == "content-signature"


def parse_message_id(container: bytes) -> str:
    return parse_header(split(container)[0]).fields.message_id


def reencrypt_as_recipient(container: bytes, substitute: bytes) -> tuple[bytes, str, bytes]:
    """Health re-encrypts a substitute plaintext under the real content key,
    reusing police's content signature: (ciphertext, its sha256, content key)."""
    header = parse_header(split(container)[0])
    _, content_signature = lift_content(container)
    wrapped = header.wrapped_key_for("health")
    assert wrapped is not None
    content_key = unwrap_content_key(wrapped, header.fields.message_id, keys("health").enc)
    body = io.BytesIO()
    payload = encrypt_segments(
        content_key,
        header.fields.message_id,
        io.BytesIO(substitute),
        SEGMENT,
        lambda _digest: content_signature,
        body,
    )
    return body.getvalue(), payload.ciphertext_sha256, content_key


def test_a_recipient_re_encryption_under_the_same_content_key_fails_the_header_digest() -> None:
    container = seal_to(PLAINTEXT)
    header, signature, _ = split(container)
    substitute = PLAINTEXT.replace(b"records found", b"nothing known")
    ciphertext, _, _ = reencrypt_as_recipient(container, substitute)
    assert open_check(assemble(header, signature, ciphertext), "health") == "ciphertext"


def test_a_substituted_plaintext_with_valid_tags_still_fails_the_content_signature() -> None:
    """Even with the header digest out of the way, the content signature pins the plaintext."""
    container = seal_to(PLAINTEXT)
    header = parse_header(split(container)[0])
    substitute = PLAINTEXT.replace(b"records found", b"nothing known")
    ciphertext, digest, content_key = reencrypt_as_recipient(container, substitute)
    police_public = keys("police").sign.public_key()

    def check_content(plaintext_sha256: bytes, signature: bytes) -> None:
        statement = content_statement(
            header.fields.message_id, "police", header.fields.recipients, plaintext_sha256
        )
        police_public.verify(signature, statement)

    with pytest.raises(InvalidSignature):
        decrypt_segments(
            content_key,
            header.fields.message_id,
            io.BytesIO(ciphertext),
            SEGMENT,
            len(ciphertext),
            digest,
            check_content,
            io.BytesIO(),
        )


def test_the_content_signature_is_returned_as_evidence_of_what_the_sender_said() -> None:
    container = seal_to(PLAINTEXT, recipients=("health", "probation"))
    opened, _ = open_bytes(container, registry(), keys("health").identity(), NOW, WINDOW, None)
    statement = content_statement(
        opened.header.fields.message_id,
        "police",
        ("probation", "health"),
        bytes.fromhex(opened.plaintext_sha256),
    )
    keys("police").sign.public_key().verify(opened.content_signature, statement)
