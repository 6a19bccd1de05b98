"""Sealing: sign, encrypt for the listed recipients, and write one container.

The header carries the ciphertext digest, so the ciphertext is spooled
(in memory up to a few MiB, then a temporary file) and copied out after the
signed header: memory stays bounded whatever the payload size. Only
ciphertext ever reaches the spool's disk file, never plaintext.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import BinaryIO

from gateway.core.envelope.container import encode_head
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.fields import HeaderFields
from gateway.core.envelope.header import Header, header_bytes, header_element
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

SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024
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


def seal(
    fields: HeaderFields,
    plaintext: BinaryIO,
    signer: SigningIdentity,
    recipients: Sequence[RecipientKey],
    out: BinaryIO,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Header:
    """Read ``plaintext`` to its end and write the sealed container to ``out``."""
    by_agency = _check_keys(fields, signer, recipients)
    content_key = os.urandom(CONTENT_KEY_BYTES)
    wrapped = tuple(
        wrap_content_key(content_key, fields.message_id, by_agency[agency])
        for agency in fields.recipients
    )
    element = header_element(fields, signer.key_id, wrapped, segment_size)

    def sign_content(plaintext_sha256: bytes) -> bytes:
        statement = content_statement(
            fields.message_id, fields.sender, fields.recipients, plaintext_sha256
        )
        return signer.private_key.sign(statement)

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b") as spool:
        payload = encrypt_segments(
            content_key, fields.message_id, plaintext, segment_size, sign_content, spool
        )
        raw = header_bytes(element, payload.ciphertext_sha256, payload.ciphertext_length)
        out.write(encode_head(raw, signer.private_key.sign(HEADER_SIGNATURE_LABEL + raw)))
        spool.seek(0)
        shutil.copyfileobj(spool, out, COPY_CHUNK_BYTES)
    return Header(
        fields=fields,
        signing_key_id=signer.key_id,
        wrapped_keys=wrapped,
        segment_size=segment_size,
        ciphertext_sha256=payload.ciphertext_sha256,
        ciphertext_length=payload.ciphertext_length,
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def seal_bytes(
    fields: HeaderFields,
    plaintext: bytes,
    signer: SigningIdentity,
    recipients: Sequence[RecipientKey],
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> bytes:
    out = io.BytesIO()
    seal(fields, io.BytesIO(plaintext), signer, recipients, out, segment_size)
    return out.getvalue()
