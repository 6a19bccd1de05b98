"""The content statement the sender signs inside the last encrypted segment.

It names the sender, every recipient and the plaintext's SHA-256, so a
recipient can prove what the sender said and to whom, and cannot lift the
content and signature into an envelope addressed to someone else.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.core.envelope.protocol import ATTACHMENT_SIGNATURE_LABEL, CONTENT_SIGNATURE_LABEL


def content_statement(
    message_id: str, sender: str, recipients: Iterable[str], plaintext_sha256: bytes
) -> bytes:
    """Fields are joined by NUL: the XSD patterns keep NUL and ',' out of ids."""
    return b"\x00".join(
        [
            CONTENT_SIGNATURE_LABEL + message_id.encode("ascii"),
            sender.encode("ascii"),
            ",".join(sorted(recipients)).encode("ascii"),
            plaintext_sha256,
        ]
    )


def attachment_statement(
    message_id: str, index: int, sender: str, recipients: Iterable[str], plaintext_sha256: bytes
) -> bytes:
    """What the sender signs inside an attachment's last segment: its place in which message.

    Its own label keeps it from ever verifying as a message's content statement.
    """
    return b"\x00".join(
        [
            ATTACHMENT_SIGNATURE_LABEL + message_id.encode("ascii"),
            str(index).encode("ascii"),
            sender.encode("ascii"),
            ",".join(sorted(recipients)).encode("ascii"),
            plaintext_sha256,
        ]
    )
