"""Origin without decrypting: what the router checks on every message.

Order: framing, header shape, signing key (registry, at created_at), the key's
scope (an intake key only for mail-borne assurance, an edge key never for it:
core/registry.py), header signature, timestamp window, replay. Each failure
names its check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.core.envelope.container import ContainerHead, read_head, split_head
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import Header, parse_header
from gateway.core.envelope.protocol import HEADER_SIGNATURE_LABEL
from gateway.core.registry import KeyRejected, KeyUse, Registry, scope_problem


class SeenMessages(Protocol):
    """Answers whether a message id was already accepted.

    Verification only asks; the caller records the id once the work is done,
    so a crash before the ack does not burn the id of an unprocessed message.
    """

    def seen(self, message_id: str) -> bool: ...


@dataclass(frozen=True)
class TimeWindow:
    """How far created_at may lie behind or ahead of the verifier's clock."""

    max_age: timedelta
    max_future_skew: timedelta


@dataclass(frozen=True)
class VerifiedHeader:
    """A header whose signature verified with the sender's registered key."""

    header: Header
    signature: bytes
    verifying_key: Ed25519PublicKey
    ciphertext_offset: int


def verify(
    container_head: bytes | BinaryIO,
    registry: Registry,
    now: datetime,
    window: TimeWindow | None,
    seen: SeenMessages | None,
) -> VerifiedHeader:
    """Verify origin from a container's bytes, or from a reader at its start.

    A reader is left at the first segment. ``window`` or ``seen`` None skips
    that check (e.g. re-verifying an archived message).
    """
    if isinstance(container_head, bytes):
        head = split_head(container_head)
    else:
        head = read_head(container_head)
    return verify_head(head, registry, now, window, seen)


def verify_head(
    head: ContainerHead,
    registry: Registry,
    now: datetime,
    window: TimeWindow | None,
    seen: SeenMessages | None,
) -> VerifiedHeader:
    header = parse_header(head.header_bytes)
    fields = header.fields
    try:
        record = registry.record(
            header.signing_key_id, fields.sender, KeyUse.SIGN, fields.created_at
        )
    except KeyRejected as exc:
        raise EnvelopeError("key", f"message {fields.message_id}: {exc}") from None
    out_of_scope = scope_problem(record, fields.assurance)
    if out_of_scope is not None:
        raise EnvelopeError("key-scope", f"message {fields.message_id}: {out_of_scope}")
    key = Ed25519PublicKey.from_public_bytes(record.raw)
    try:
        key.verify(head.signature, HEADER_SIGNATURE_LABEL + head.header_bytes)
    except InvalidSignature:
        raise EnvelopeError(
            "signature", f"header signature does not verify with key {header.signing_key_id}"
        ) from None
    if window is not None:
        if fields.created_at < now - window.max_age:
            raise EnvelopeError(
                "timestamp",
                f"message {fields.message_id} created at {fields.created_at.isoformat()} "
                f"is older than {window.max_age}",
            )
        if fields.created_at > now + window.max_future_skew:
            raise EnvelopeError(
                "timestamp",
                f"message {fields.message_id} created at {fields.created_at.isoformat()} "
                f"is more than {window.max_future_skew} in the future",
            )
    if seen is not None and seen.seen(fields.message_id):
        raise EnvelopeError("replay", f"message {fields.message_id} was already accepted")
    return VerifiedHeader(header, head.signature, key, head.size)


def check_ciphertext(verified: VerifiedHeader, container: bytes) -> None:
    """Check a whole container's ciphertext against its verified header, without keys.

    The router has the whole broker message body, so it can reject a body whose
    segments were changed or cut before any recipient spends effort on it.
    """
    header = verified.header
    if split_head(container).header_bytes != header.raw:
        raise EnvelopeError("container", f"message {header.fields.message_id}: header differs")
    ciphertext = memoryview(container)[verified.ciphertext_offset :]
    if len(ciphertext) != header.ciphertext_length:
        raise EnvelopeError(
            "ciphertext",
            f"message {header.fields.message_id}: {len(ciphertext)} bytes, "
            f"header declares {header.ciphertext_length}",
        )
    if hashlib.sha256(ciphertext).hexdigest() != header.ciphertext_sha256:
        raise EnvelopeError(
            "ciphertext", f"message {header.fields.message_id}: SHA-256 does not match the header"
        )
