"""The envelope (DESIGN.md section 4): sealed, signed messages the router can route but not read.

The safe recipe:
- an edge calls ``seal`` (or ``seal_bytes``) with its signing identity and
  the recipients' current keys from the registry;
- the router calls ``verify`` on every message, then ``check_ciphertext``
  on the whole body; it never holds a decryption key;
- a receiving edge calls ``open`` (or ``open_bytes``), which repeats every
  check, decrypts, and verifies the sender's content signature before the
  last plaintext bytes are released.
Every failure is an ``EnvelopeError`` whose ``check`` names what failed.

Construction: a random 32-byte content key per message, HPKE-wrapped
(X25519, HKDF-SHA256, AES-256-GCM) per recipient key with ``info`` binding
message id and key id; AES-256-GCM segments whose nonce and AAD carry the
index and a final flag; the final segment carries the sender's Ed25519
signature over (message id, sender, sorted recipients, plaintext SHA-256);
the header is signed with Ed25519 over its exact bytes.

The DESIGN.md section 4 properties and the tests (tests/unit) that prove them:
- confidentiality: test_envelope_confidentiality (non-recipient, wrong or
  missing private key, no plaintext in header or ciphertext);
- origin: test_envelope_origin and the router test in confidentiality
  (verify needs only the registry);
- integrity: test_envelope_origin (header, signature, ciphertext bytes),
  test_envelope_recipient_binding (swapped, added, removed recipient),
  test_envelope_segments, and the byte-flip property in test_envelope_properties;
- recipient binding and plaintext non-repudiation: test_envelope_recipient_binding;
- replay and timestamps, keys (revoked, rotated, unknown, another agency's):
  test_envelope_origin;
- attachments (attachment_cipher.py: a section per file under an HKDF-derived
  key, digests in the signed header, the sender's attachment statement in
  each last segment): test_envelope_attachments (round trip, moved, swapped,
  cut, altered or dropped sections, a file changed while sealing, memory);
- size: test_envelope_memory (64 MiB through files, bounded Python memory)
  and bench/envelope.py (1 GiB, peak RSS).
"""

from gateway.core.envelope.envelope_error import Check, EnvelopeError
from gateway.core.envelope.fields import HeaderFields
from gateway.core.envelope.header import Header, SealedAttachment, WrappedKey
from gateway.core.envelope.identities import (
    DecryptionIdentity,
    RecipientKey,
    SigningIdentity,
    SigningKeyNotHeld,
    SigningKeys,
    recipient_keys,
)
from gateway.core.envelope.opening import AttachmentOut, Opened, open, open_bytes
from gateway.core.envelope.sealing import AttachmentInput, seal, seal_bytes, seal_message
from gateway.core.envelope.segments import OpenedPayload
from gateway.core.envelope.verification import (
    SeenMessages,
    TimeWindow,
    VerifiedHeader,
    check_ciphertext,
    verify,
)

__all__ = [
    "AttachmentInput",
    "AttachmentOut",
    "Check",
    "DecryptionIdentity",
    "EnvelopeError",
    "Header",
    "HeaderFields",
    "Opened",
    "OpenedPayload",
    "RecipientKey",
    "SealedAttachment",
    "SeenMessages",
    "SigningIdentity",
    "SigningKeyNotHeld",
    "SigningKeys",
    "TimeWindow",
    "VerifiedHeader",
    "WrappedKey",
    "check_ciphertext",
    "open",
    "open_bytes",
    "recipient_keys",
    "seal",
    "seal_bytes",
    "seal_message",
    "verify",
]
