"""Constants of envelope format v1: labels, sizes, container framing.

Every signature and every key use has its own label, so bytes signed or
encrypted for one purpose can never be replayed as another.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from gateway.core.schemas import NAMESPACE

__all__ = ["NAMESPACE"]  # one namespace for headers and payloads; re-exported here

MAGIC = b"MASHENV1"
SCHEMA_VERSION = "1.0"
CIPHER = "AES-256-GCM-SEGMENTED"

HEADER_SIGNATURE_LABEL = b"mash-gateway/v1/header\x00"
CONTENT_SIGNATURE_LABEL = b"mash-gateway/v1/content\x00"
WRAP_LABEL = b"mash-gateway/v1/wrap|"
SEGMENT_LABEL = b"mash-gateway/v1/segment\x00"
ATTACHMENT_SIGNATURE_LABEL = b"mash-gateway/v1/attachment\x00"
ATTACHMENT_KEY_LABEL = b"mash-gateway/v1/attachment-key\x00"
PIECE_SIGNATURE_LABEL = b"mash-gateway/v1/piece\x00"

HPKE_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)

CONTENT_KEY_BYTES = 32
SIGNATURE_BYTES = 64
TAG_BYTES = 16
LENGTH_BYTES = 4
DEFAULT_SEGMENT_SIZE = 64 * 1024  # the XSD bounds Payload/@segmentSize to 1 KiB..16 MiB
MAX_ATTACHMENTS = 100  # the XSDs' bound; [limits] may set a lower one
MAX_HEADER_BYTES = 256 * 1024  # 64 recipients need about 12 KiB; the rest is headroom
