"""PGP/MIME structure (RFC 3156) read from the raw bytes, never re-serialized.

Pure. A detached signature covers the exact bytes of the first body part of
a multipart/signed entity, headers included. Parsing the message with the
email package and writing it back out can change those bytes (header
folding, line endings, transfer encodings), so this module only slices the
raw message at its boundaries (RFC 2046 section 5.1.1): the CRLF before a
delimiter belongs to the delimiter, not to the part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

CRLF = b"\r\n"
SIGNED = "multipart/signed"
ENCRYPTED = "multipart/encrypted"
PGP_SIGNATURE = "application/pgp-signature"
PGP_ENCRYPTED = "application/pgp-encrypted"


class MimeError(ValueError):
    """The message is not the MIME structure it claims to be; the text says what is wrong."""


@dataclass(frozen=True)
class Entity:
    raw: bytes
    headers: Message
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    def header_values(self, name: str) -> list[str]:
        """Every value of a header field, as text. The compat32 parser hands a value holding
        8-bit bytes over as an email.header.Header, not a str; its str() shows each such
        byte as U+FFFD."""
        return [str(value) for value in self.headers.get_all(name, [])]

    def param(self, name: str) -> str | None:
        value = self.headers.get_param(name)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class SignedParts:
    signed: bytes  # the exact bytes the signature covers
    signature: bytes  # the ASCII-armoured detached signature


def entity(raw: bytes) -> Entity:
    """Split an entity at its first empty line; headers are parsed, the body is kept as bytes."""
    end = raw.find(CRLF + CRLF)
    if raw.startswith(CRLF):
        head, body = b"", raw[2:]
    elif end == -1:
        head, body = raw, b""
    else:
        head, body = raw[: end + 2], raw[end + 4 :]
    return Entity(raw, BytesHeaderParser().parsebytes(head), body)


def body_parts(body: bytes, boundary: str) -> list[bytes]:
    """The exact bytes of each body part between the boundaries, in order."""
    marker = CRLF + b"--" + boundary.encode("ascii", "strict")
    text = CRLF + body  # a delimiter on the very first line has no CRLF of its own
    parts: list[bytes] = []
    start: int | None = None
    for position, next_start in _delimiters(text, marker):
        if start is not None:
            parts.append(text[start:position])
        if next_start is None:
            return parts
        start = next_start
    raise MimeError(f"multipart body has no closing boundary --{boundary}--")


def _delimiters(text: bytes, marker: bytes) -> Iterator[tuple[int, int | None]]:
    """(where each delimiter starts, where the next part starts; None for the close delimiter)."""
    position = text.find(marker)
    while position != -1:
        after = position + len(marker)
        if text.startswith(b"--", after):
            yield position, None
            return
        line_end = text.find(CRLF, after)
        if line_end != -1 and not text[after:line_end].strip(b" \t"):
            yield position, line_end + 2
        position = text.find(marker, after)


def _multipart(message: Entity, expected_protocol: str) -> list[bytes]:
    boundary = message.param("boundary")
    if not boundary:
        raise MimeError(f"{message.content_type} without a boundary parameter")
    protocol = (message.param("protocol") or "").lower()
    if protocol != expected_protocol:
        raise MimeError(f"{message.content_type} must have protocol={expected_protocol!r}")
    try:
        parts = body_parts(message.body, boundary)
    except UnicodeEncodeError:
        raise MimeError("the boundary is not ASCII") from None
    if len(parts) != 2:
        raise MimeError(f"{message.content_type} must have exactly two parts, not {len(parts)}")
    return parts


def signed_parts(message: Entity) -> SignedParts:
    """RFC 3156 section 5: the signed part's raw bytes and the detached signature."""
    signed, signature = _multipart(message, PGP_SIGNATURE)
    signature_part = entity(signature)
    if signature_part.content_type != PGP_SIGNATURE:
        raise MimeError(f"the second part of multipart/signed must be {PGP_SIGNATURE}")
    return SignedParts(signed, signature_part.body)


def encrypted_payload(message: Entity) -> bytes:
    """RFC 3156 section 4: the OpenPGP message in the second part."""
    control, payload = _multipart(message, PGP_ENCRYPTED)
    control_part = entity(control)
    if control_part.content_type != PGP_ENCRYPTED or b"Version: 1" not in control_part.body:
        raise MimeError(f"the first part of multipart/encrypted must be {PGP_ENCRYPTED}, Version 1")
    return entity(payload).body
