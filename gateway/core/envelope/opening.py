"""Opening: verify origin, unwrap the content key, decrypt and check the content signature."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature

from gateway.core.envelope.container import read_head
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import Header
from gateway.core.envelope.identities import DecryptionIdentity
from gateway.core.envelope.segments import decrypt_segments
from gateway.core.envelope.statement import content_statement
from gateway.core.envelope.verification import SeenMessages, TimeWindow, verify_head
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


def open(
    container: BinaryIO,
    registry: Registry,
    identity: DecryptionIdentity,
    now: datetime,
    window: TimeWindow | None,
    seen: SeenMessages | None,
    out: BinaryIO,
) -> Opened:
    """Open ``container`` for ``identity``, streaming the plaintext to ``out``.

    On an error ``out`` may hold a partial plaintext: write to a temporary
    place and keep it only when this returns.
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

    payload = decrypt_segments(
        content_key,
        fields.message_id,
        container,
        header.segment_size,
        header.ciphertext_length,
        header.ciphertext_sha256,
        check_content,
        out,
    )
    return Opened(
        header=header,
        plaintext_sha256=payload.plaintext_sha256,
        plaintext_length=payload.plaintext_length,
        ciphertext_sha256=payload.ciphertext_sha256,
        content_signature=payload.content_signature,
    )


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
