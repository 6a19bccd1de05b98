"""Attachments: each file's bytes in its own AES-256-GCM segment section of the container.

An attachment is not a second cipher: it is the payload's segment format
(segments.py) under a key of its own, derived with HKDF-SHA256 from the
message's content key (``info`` = label, message id, attachment index), so
whoever can open the message can open its attachments and nobody else can,
and no wrapped key is added per file. The segments' AAD names
``<message id>/<index>``, and the final segment carries the sender's
signature over the attachment statement (statement.py: message id, index,
sender, recipients, the file's SHA-256), so a section cannot be moved to
another message, another place in this one, or other recipients.

The clear header names each section's ciphertext SHA-256 and length, so the
router checks a transfer without a key; the canonical XML names each file's
name, media type, size and SHA-256, which the opener compares (attachments.py
in gateway/core). The bytes never sit inside XML text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import IO, BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.core.envelope.header import SealedAttachment
from gateway.core.envelope.protocol import ATTACHMENT_KEY_LABEL, CONTENT_KEY_BYTES
from gateway.core.envelope.segments import (
    OpenedPayload,
    SealedPayload,
    decrypt_segments,
    encrypt_segments,
)
from gateway.core.envelope.statement import attachment_statement


def attachment_key(content_key: bytes, message_id: str, index: int) -> bytes:
    """The key of attachment ``index`` (1-based): one HKDF expansion of the content key."""
    info = ATTACHMENT_KEY_LABEL + message_id.encode("ascii") + b"\x00" + str(index).encode("ascii")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=CONTENT_KEY_BYTES, salt=None, info=info)
    return hkdf.derive(content_key)


def section_id(message_id: str, index: int) -> str:
    """The id the segments' AAD carries: a UUID never holds '/', so it names no message."""
    return f"{message_id}/{index}"


def encrypt_attachment(
    content_key: bytes,
    message_id: str,
    index: int,
    plaintext: BinaryIO,
    segment_size: int,
    sign: Callable[[bytes], bytes],
    out: IO[bytes],
) -> SealedPayload:
    """Encrypt one file into its section; ``sign`` signs the attachment statement."""
    key = attachment_key(content_key, message_id, index)
    return encrypt_segments(key, section_id(message_id, index), plaintext, segment_size, sign, out)


def decrypt_attachment(
    content_key: bytes,
    message_id: str,
    index: int,
    section: BinaryIO,
    segment_size: int,
    sealed: SealedAttachment,
    check_content: Callable[[bytes, bytes], None],
    out: BinaryIO,
) -> OpenedPayload:
    """Decrypt one section; ``check_content`` verifies the attachment statement."""
    key = attachment_key(content_key, message_id, index)
    return decrypt_segments(
        key,
        section_id(message_id, index),
        section,
        segment_size,
        sealed.ciphertext_length,
        sealed.ciphertext_sha256,
        check_content,
        out,
    )


def statement_for(
    message_id: str, index: int, sender: str, recipients: Iterable[str]
) -> Callable[[bytes], bytes]:
    """The attachment statement of ``index``, waiting for the file's SHA-256."""
    return lambda digest: attachment_statement(message_id, index, sender, recipients, digest)
