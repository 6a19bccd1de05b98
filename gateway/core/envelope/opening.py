"""Opening: verify origin, unwrap the content key, decrypt and check the content signature.

Then each attachment section in turn (attachment_cipher.py), each checked
against the header's digest and the sender's attachment statement. Whether
the files are the ones the payload names (name, size, SHA-256) is the
caller's check on the payload (gateway/core/attachments.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, cast

from cryptography.exceptions import InvalidSignature

from gateway.core.envelope.attachment_cipher import decrypt_attachment, statement_for
from gateway.core.envelope.container import read_head
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import Header
from gateway.core.envelope.identities import DecryptionIdentity
from gateway.core.envelope.segments import OpenedPayload, decrypt_segments
from gateway.core.envelope.statement import content_statement
from gateway.core.envelope.streams import Bounded
from gateway.core.envelope.verification import (
    SeenMessages,
    TimeWindow,
    VerifiedHeader,
    verify_head,
)
from gateway.core.envelope.wrap import unwrap_content_key
from gateway.core.registry import Registry


@dataclass(frozen=True)
class Opened:
    """What a receipt names: the header, and digests of what was received and decrypted.

    ``content_signature`` is the sender's signature over the content statement:
    the recipient's evidence of what the sender said, and to whom.
    """

    header: Header
    plaintext_sha256: str
    plaintext_length: int
    ciphertext_sha256: str
    content_signature: bytes
    attachments: tuple[OpenedPayload, ...] = ()


AttachmentOut = Callable[[int], BinaryIO]


def open(
    container: BinaryIO,
    registry: Registry,
    identity: DecryptionIdentity,
    now: datetime,
    window: TimeWindow | None,
    seen: SeenMessages | None,
    out: BinaryIO,
    attachment_out: AttachmentOut | None = None,
) -> Opened:
    """Open ``container`` for ``identity``, streaming the plaintext to ``out``.

    Attachment ``i`` (1-based) streams to ``attachment_out(i)``; a message
    with attachments and no ``attachment_out`` is refused. On an error
    ``out`` and the attachment files may hold partial plaintext: write to a
    temporary place and keep it only when this returns.
    """
    verified = verify_head(read_head(container), registry, now, window, seen)
    header = verified.header
    fields = header.fields
    wrapped = header.wrapped_key_for(identity.agency)
    if wrapped is None:
        raise EnvelopeError(
            "recipient", f"{identity.agency} is not a recipient of message {fields.message_id}"
        )
    private_key = identity.private_keys.get(wrapped.key_id)
    if private_key is None:
        raise EnvelopeError(
            "recipient", f"{identity.agency} holds no private key for key id {wrapped.key_id}"
        )
    content_key = unwrap_content_key(wrapped, fields.message_id, private_key)

    def check_content(plaintext_sha256: bytes, signature: bytes) -> None:
        statement = content_statement(
            fields.message_id, fields.sender, fields.recipients, plaintext_sha256
        )
        try:
            verified.verifying_key.verify(signature, statement)
        except InvalidSignature:
            raise EnvelopeError(
                "content-signature",
                f"message {fields.message_id}: content statement does not verify with key "
                f"{header.signing_key_id} for these recipients",
            ) from None

    if header.attachments and attachment_out is None:
        raise EnvelopeError(
            "attachment",
            f"message {fields.message_id} carries {len(header.attachments)} attachment(s) "
            "and this opener has nowhere to put them",
        )
    payload = decrypt_segments(
        content_key,
        fields.message_id,
        cast(BinaryIO, Bounded(container, header.ciphertext_length)),
        header.segment_size,
        header.ciphertext_length,
        header.ciphertext_sha256,
        check_content,
        out,
    )
    attachments = []
    for index, sealed in enumerate(header.attachments, start=1):
        assert attachment_out is not None  # refused above
        section = cast(BinaryIO, Bounded(container, sealed.ciphertext_length))
        attachments.append(
            decrypt_attachment(
                content_key,
                fields.message_id,
                index,
                section,
                header.segment_size,
                sealed,
                _attachment_check(verified, index),
                attachment_out(index),
            )
        )
    if container.read(1):
        raise EnvelopeError("segments", "trailing data after the last section")
    return Opened(
        header=header,
        plaintext_sha256=payload.plaintext_sha256,
        plaintext_length=payload.plaintext_length,
        ciphertext_sha256=payload.ciphertext_sha256,
        content_signature=payload.content_signature,
        attachments=tuple(attachments),
    )


def _attachment_check(verified: VerifiedHeader, index: int) -> Callable[[bytes, bytes], None]:
    """Verifies attachment ``index``'s statement with the key that verified the header."""
    header = verified.header
    fields = header.fields
    statement = statement_for(fields.message_id, index, fields.sender, fields.recipients)

    def check(digest: bytes, signature: bytes) -> None:
        try:
            verified.verifying_key.verify(signature, statement(digest))
        except InvalidSignature:
            raise EnvelopeError(
                "content-signature",
                f"message {fields.message_id}: attachment {index}'s statement does not "
                f"verify with key {header.signing_key_id} for these recipients",
            ) from None

    return check


def open_bytes(
    container: bytes,
    registry: Registry,
    identity: DecryptionIdentity,
    now: datetime,
    window: TimeWindow | None,
    seen: SeenMessages | None,
) -> tuple[Opened, bytes]:
    out = io.BytesIO()
    opened = open(io.BytesIO(container), registry, identity, now, window, seen, out)
    return opened, out.getvalue()
