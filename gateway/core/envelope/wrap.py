"""Wrapping the per-message content key for each recipient with HPKE (RFC 9180).

``info`` binds the protocol, the message id and the recipient key id, so a
wrapped key cannot be moved to another message or presented to another key.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import WrappedKey
from gateway.core.envelope.identities import RecipientKey
from gateway.core.envelope.protocol import CONTENT_KEY_BYTES, HPKE_SUITE, WRAP_LABEL


def wrap_info(message_id: str, key_id: str) -> bytes:
    return WRAP_LABEL + message_id.encode("ascii") + b"|" + key_id.encode("ascii")


def wrap_content_key(content_key: bytes, message_id: str, recipient: RecipientKey) -> WrappedKey:
    wrapped = HPKE_SUITE.encrypt(
        content_key, recipient.public_key, info=wrap_info(message_id, recipient.key_id)
    )
    return WrappedKey(recipient.agency, recipient.key_id, wrapped)


def unwrap_content_key(
    wrapped: WrappedKey, message_id: str, private_key: X25519PrivateKey
) -> bytes:
    try:
        key = HPKE_SUITE.decrypt(
            wrapped.wrapped, private_key, info=wrap_info(message_id, wrapped.key_id)
        )
    except (InvalidTag, ValueError):
        raise EnvelopeError(
            "recipient", f"wrapped key for {wrapped.agency} does not open with key {wrapped.key_id}"
        ) from None
    if len(key) != CONTENT_KEY_BYTES:
        raise EnvelopeError("recipient", f"wrapped key for {wrapped.agency} has the wrong length")
    return key
