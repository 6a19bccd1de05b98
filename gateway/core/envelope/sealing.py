"""Sealing: sign, encrypt for the listed recipients, and write one container.

The header carries the ciphertext digest, so the ciphertext is written to a
spool the caller provides and copied out after the signed header. A shell
sealing a large payload passes a temporary file (memory stays bounded
whatever the size; only ciphertext ever reaches it, never plaintext);
``seal_bytes`` spools in memory, since its plaintext is in memory already.
The spool is the caller's so that this module touches no file and stays pure.

Attachments (attachment_cipher.py) are sealed first, each into a spool of
its own, because the header names their ciphertext digests too; ``seal``
then appends each section after the payload's, and ``seal_message`` leaves
them in their spools for a shell that sends them as separate pieces.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from gateway.core.envelope.attachment_cipher import encrypt_attachment, statement_for
from gateway.core.envelope.container import encode_head
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.fields import HeaderFields
from gateway.core.envelope.header import Header, SealedAttachment, header_bytes, header_element
from gateway.core.envelope.identities import RecipientKey, SigningIdentity
from gateway.core.envelope.protocol import (
    CONTENT_KEY_BYTES,
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIGNATURE_LABEL,
)
from gateway.core.envelope.segments import encrypt_segments
from gateway.core.envelope.statement import content_statement
from gateway.core.envelope.wrap import wrap_content_key
from gateway.core.registry import KeyUse, key_id_for

COPY_CHUNK_BYTES = 1024 * 1024


def _check_keys(
    fields: HeaderFields, signer: SigningIdentity, recipients: Sequence[RecipientKey]
) -> dict[str, RecipientKey]:
    """Refuse to seal what nobody could verify or open: wrong agencies, mislabelled keys."""
    if signer.agency != fields.sender:
        raise EnvelopeError(
            "key", f"signing key {signer.key_id} belongs to {signer.agency}, not {fields.sender}"
        )
    signing_raw = signer.private_key.public_key().public_bytes_raw()
    expected_id = key_id_for(signer.agency, KeyUse.SIGN, signing_raw)
    if signer.key_id != expected_id:
        raise EnvelopeError("key", f"signing key id {signer.key_id} does not name its key")
    by_agency = {r.agency: r for r in recipients}
    if len(by_agency) != len(recipients) or sorted(by_agency) != sorted(fields.recipients):
        raise EnvelopeError(
            "recipient",
            f"keys for {sorted(r.agency for r in recipients)} "
            f"do not match the recipients {sorted(fields.recipients)}",
        )
    for recipient in recipients:
        raw = recipient.public_key.public_bytes_raw()
        expected_id = key_id_for(recipient.agency, KeyUse.ENCRYPT, raw)
        if recipient.key_id != expected_id:
            raise EnvelopeError(
                "key", f"encryption key id {recipient.key_id} does not name its key"
            )
    return by_agency


@dataclass(frozen=True)
class AttachmentInput:
    """One file to seal: its bytes, the SHA-256 the payload declares for it, and a spool.

    ``spool`` is an empty, seekable binary file for the section's ciphertext;
    sealing leaves it rewound to its start.
    """

    plaintext: BinaryIO
    sha256: str
    spool: BinaryIO


def seal(
    fields: HeaderFields,
    plaintext: BinaryIO,
    signer: SigningIdentity,
    recipients: Sequence[RecipientKey],
    out: BinaryIO,
    spool: BinaryIO,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    attachments: Sequence[AttachmentInput] = (),
) -> Header:
    """Read ``plaintext`` (and each attachment) to its end and write one container to ``out``.

    ``spool`` is an empty, seekable binary file that holds the ciphertext
    until the signed header, which names its digest, has been written.
    """
    header = seal_message(
        fields, plaintext, signer, recipients, out, spool, segment_size, attachments
    )
    for attachment in attachments:
        _copy(attachment.spool, out)
    return header


def seal_message(
    fields: HeaderFields,
    plaintext: BinaryIO,
    signer: SigningIdentity,
    recipients: Sequence[RecipientKey],
    out: BinaryIO,
    spool: BinaryIO,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    attachments: Sequence[AttachmentInput] = (),
) -> Header:
    """Write the head and the payload's section to ``out``; each attachment's section stays
    in its spool, rewound, to follow in order (``seal`` appends them; the edge sends pieces).

    An attachment whose bytes do not hash to the SHA-256 it was declared with (the file
    changed since the payload named it) is refused before anything is written to ``out``.
    """
    by_agency = _check_keys(fields, signer, recipients)
    content_key = secrets.token_bytes(CONTENT_KEY_BYTES)
    wrapped = tuple(
        wrap_content_key(content_key, fields.message_id, by_agency[agency])
        for agency in fields.recipients
    )
    element = header_element(fields, signer.key_id, wrapped, segment_size, len(attachments))
    sealed_attachments = tuple(
        _seal_attachment(content_key, fields, signer, index, attachment, segment_size)
        for index, attachment in enumerate(attachments, start=1)
    )

    def sign_content(plaintext_sha256: bytes) -> bytes:
        statement = content_statement(
            fields.message_id, fields.sender, fields.recipients, plaintext_sha256
        )
        return signer.private_key.sign(statement)

    payload = encrypt_segments(
        content_key, fields.message_id, plaintext, segment_size, sign_content, spool
    )
    raw = header_bytes(
        element, payload.ciphertext_sha256, payload.ciphertext_length, sealed_attachments
    )
    out.write(encode_head(raw, signer.private_key.sign(HEADER_SIGNATURE_LABEL + raw)))
    spool.seek(0)
    _copy(spool, out)
    return Header(
        fields=fields,
        signing_key_id=signer.key_id,
        wrapped_keys=wrapped,
        segment_size=segment_size,
        ciphertext_sha256=payload.ciphertext_sha256,
        ciphertext_length=payload.ciphertext_length,
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        attachments=sealed_attachments,
    )


def _seal_attachment(
    content_key: bytes,
    fields: HeaderFields,
    signer: SigningIdentity,
    index: int,
    attachment: AttachmentInput,
    segment_size: int,
) -> SealedAttachment:
    statement = statement_for(fields.message_id, index, fields.sender, fields.recipients)

    def sign(plaintext_sha256: bytes) -> bytes:
        if plaintext_sha256.hex() != attachment.sha256:
            raise EnvelopeError(
                "attachment",
                f"attachment {index}: its bytes do not match the SHA-256 the payload declares "
                f"({attachment.sha256}); the file changed after it was named",
            )
        return signer.private_key.sign(statement(plaintext_sha256))

    sealed = encrypt_attachment(
        content_key,
        fields.message_id,
        index,
        attachment.plaintext,
        segment_size,
        sign,
        attachment.spool,
    )
    attachment.spool.seek(0)
    return SealedAttachment(sealed.ciphertext_sha256, sealed.ciphertext_length)


def _copy(source: BinaryIO, out: BinaryIO) -> None:
    while chunk := source.read(COPY_CHUNK_BYTES):
        out.write(chunk)


def seal_bytes(
    fields: HeaderFields,
    plaintext: bytes,
    signer: SigningIdentity,
    recipients: Sequence[RecipientKey],
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> bytes:
    out = io.BytesIO()
    seal(fields, io.BytesIO(plaintext), signer, recipients, out, io.BytesIO(), segment_size)
    return out.getvalue()
