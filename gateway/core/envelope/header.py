"""The envelope header: built once with lxml, parsed strictly, checked against the XSD.

The header signature covers the exact bytes produced here, so the bytes are
serialised once and never rebuilt; parsing reads them back into values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from lxml import etree

from gateway.core import xmlsafe
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.fields import HeaderFields
from gateway.core.envelope.protocol import CIPHER, NAMESPACE, SCHEMA_VERSION
from gateway.core.resources import schemas_dir

_NS = "{" + NAMESPACE + "}"
_PLACEHOLDER_SHA256 = "0" * 64


@dataclass(frozen=True)
class WrappedKey:
    """The content key, HPKE-sealed to one recipient's key."""

    agency: str
    key_id: str
    wrapped: bytes


@dataclass(frozen=True)
class SealedAttachment:
    """What the header states of one attachment section: checkable without a key."""

    ciphertext_sha256: str
    ciphertext_length: int


@dataclass(frozen=True)
class Header:
    """A header's values, its exact bytes and their SHA-256 (hex), for audit and receipts."""

    fields: HeaderFields
    signing_key_id: str
    wrapped_keys: tuple[WrappedKey, ...]
    segment_size: int
    ciphertext_sha256: str
    ciphertext_length: int
    raw: bytes
    sha256: str
    attachments: tuple[SealedAttachment, ...] = ()

    @property
    def container_length(self) -> int:
        """The bytes after the head: the payload's section, then each attachment's."""
        return self.ciphertext_length + sum(a.ciphertext_length for a in self.attachments)

    def wrapped_key_for(self, agency: str) -> WrappedKey | None:
        return next((w for w in self.wrapped_keys if w.agency == agency), None)


@cache
def header_schema() -> etree.XMLSchema:
    """The shipped envelope-header XSD, loaded once: it is the one definition of a valid header."""
    path = schemas_dir() / "envelope-header.xsd"
    return etree.XMLSchema(etree.parse(str(path), parser=xmlsafe.schema_parser()))


def _validate(root: etree._Element, what: str) -> None:
    try:
        header_schema().assertValid(root)
    except etree.DocumentInvalid as exc:
        raise EnvelopeError("header", f"{what}: {exc}") from None


def _instant(value: datetime, name: str) -> str:
    if value.utcoffset() is None:
        raise EnvelopeError("header", f"{name} {value.isoformat()} has no time zone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _NS + name)
    if text is not None:
        child.text = text
    return child


def header_element(
    fields: HeaderFields,
    signing_key_id: str,
    wrapped_keys: tuple[WrappedKey, ...],
    segment_size: int,
    attachment_count: int = 0,
) -> etree._Element:
    """The header tree, already checked against the XSD, with a placeholder payload digest.

    Checking before encrypting means a bad field fails in microseconds, not after a
    gigabyte; the digest and length filled in later can only be valid values.
    """
    nsmap: dict[str | None, str] = {None: NAMESPACE}
    root = etree.Element(_NS + "EnvelopeHeader", nsmap=nsmap, version="1")  # type: ignore[arg-type]
    _sub(root, "MessageId", fields.message_id)
    _sub(root, "CorrelationId", fields.correlation_id)
    if fields.in_reply_to is not None:
        _sub(root, "InReplyTo", fields.in_reply_to)
    _sub(root, "MessageType", fields.message_type)
    _sub(root, "SchemaVersion", SCHEMA_VERSION)
    sender = _sub(root, "Sender")
    sender.set("agency", fields.sender)
    sender.set("signingKeyId", signing_key_id)
    recipients = _sub(root, "Recipients")
    for wrap in wrapped_keys:
        recipient = _sub(recipients, "Recipient", base64.b64encode(wrap.wrapped).decode("ascii"))
        recipient.set("agency", wrap.agency)
        recipient.set("keyId", wrap.key_id)
    _sub(root, "CreatedAt", _instant(fields.created_at, "created_at"))
    if fields.rag is not None:
        _sub(root, "Rag", fields.rag)
    if fields.deadline is not None:
        _sub(root, "Deadline", _instant(fields.deadline, "deadline"))
    _sub(root, "Purpose", fields.purpose)
    for basis in fields.lawful_bases:
        _sub(root, "LawfulBasis", basis)
    _sub(root, "Assurance", fields.assurance)
    if fields.receipt_outcome is not None:
        receipt = _sub(root, "Receipt")
        receipt.set("outcome", fields.receipt_outcome)
        if fields.receipt_check is not None:
            receipt.set("failedCheck", fields.receipt_check)
    payload = _sub(root, "Payload")
    payload.set("cipher", CIPHER)
    payload.set("segmentSize", str(segment_size))
    _sub(payload, "CiphertextSha256", _PLACEHOLDER_SHA256)
    _sub(payload, "CiphertextLength", "0")
    for _ in range(attachment_count):
        attachment = _sub(payload, "Attachment")
        _sub(attachment, "CiphertextSha256", _PLACEHOLDER_SHA256)
        _sub(attachment, "CiphertextLength", "0")
    _validate(root, f"header of message {fields.message_id!r}")
    return root


def header_bytes(
    element: etree._Element,
    ciphertext_sha256: str,
    ciphertext_length: int,
    attachments: tuple[SealedAttachment, ...] = (),
) -> bytes:
    """Fill in the payload's (and attachments') digests and serialise: the bytes that get signed."""
    element.find(f"{_NS}Payload/{_NS}CiphertextSha256").text = ciphertext_sha256  # type: ignore[union-attr]
    element.find(f"{_NS}Payload/{_NS}CiphertextLength").text = str(ciphertext_length)  # type: ignore[union-attr]
    slots = element.findall(f"{_NS}Payload/{_NS}Attachment")
    if len(slots) != len(attachments):
        raise EnvelopeError(
            "header", f"{len(attachments)} attachments sealed, {len(slots)} declared"
        )
    for slot, sealed in zip(slots, attachments, strict=True):
        digest, length = list(slot)
        digest.text, length.text = sealed.ciphertext_sha256, str(sealed.ciphertext_length)
    return bytes(etree.tostring(element, encoding="UTF-8", xml_declaration=False))


class _Cursor:
    """Walks the root's children in schema order, so each field is read exactly once."""

    def __init__(self, root: etree._Element) -> None:
        self._children = list(root)
        self._at = 0

    def optional(self, name: str) -> etree._Element | None:
        if self._at < len(self._children) and self._children[self._at].tag == _NS + name:
            self._at += 1
            return self._children[self._at - 1]
        return None

    def one(self, name: str) -> etree._Element:
        element = self.optional(name)
        if element is None:
            raise EnvelopeError("header", f"missing element {name}")
        return element

    def many(self, name: str) -> list[etree._Element]:
        found = []
        while (element := self.optional(name)) is not None:
            found.append(element)
        return found

    def text(self, name: str) -> str:
        return self.one(name).text or ""

    def optional_text(self, name: str) -> str | None:
        element = self.optional(name)
        return None if element is None else element.text or ""

    def finish(self) -> None:
        if self._at != len(self._children):
            raise EnvelopeError("header", f"unexpected element {self._children[self._at].tag}")


def _parse_instant(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise EnvelopeError("header", f"{name} {text!r} is not an ISO 8601 instant") from None
    if value.utcoffset() is None:
        raise EnvelopeError("header", f"{name} {text!r} has no time zone")
    return value


def _b64(text: str, agency: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("header", f"wrapped key for {agency} is not base64") from None


def parse_header(raw: bytes) -> Header:
    """Parse and check header bytes: safe XML, valid against the XSD, no comments or PIs."""
    try:
        root = xmlsafe.parse(raw, source="envelope header")
    except xmlsafe.UnsafeXmlError as exc:
        raise EnvelopeError("header", str(exc)) from None
    _validate(root, "envelope header")
    for node in root.iter():
        if not isinstance(node.tag, str):
            raise EnvelopeError(
                "header", f"line {node.sourceline}: comments and PIs are not allowed"
            )
    cursor = _Cursor(root)
    message_id = cursor.text("MessageId")
    correlation_id = cursor.text("CorrelationId")
    in_reply_to = cursor.optional_text("InReplyTo")
    message_type = cursor.text("MessageType")
    cursor.one("SchemaVersion")
    sender = cursor.one("Sender")
    wrapped_keys = tuple(
        WrappedKey(r.get("agency", ""), r.get("keyId", ""), _b64(r.text or "", r.get("agency", "")))
        for r in cursor.one("Recipients")
    )
    created_at = _parse_instant(cursor.text("CreatedAt"), "CreatedAt")
    rag = cursor.optional_text("Rag")
    deadline_text = cursor.optional_text("Deadline")
    purpose = cursor.text("Purpose")
    lawful_bases = tuple(e.text or "" for e in cursor.many("LawfulBasis"))
    assurance = cursor.text("Assurance")
    receipt = cursor.optional("Receipt")
    payload = cursor.one("Payload")
    cursor.finish()
    fields = HeaderFields(
        message_id=message_id,
        correlation_id=correlation_id,
        message_type=message_type,
        sender=sender.get("agency", ""),
        recipients=tuple(w.agency for w in wrapped_keys),
        created_at=created_at,
        purpose=purpose,
        lawful_bases=lawful_bases,
        assurance=assurance,
        in_reply_to=in_reply_to,
        rag=rag,
        deadline=None if deadline_text is None else _parse_instant(deadline_text, "Deadline"),
        receipt_outcome=None if receipt is None else receipt.get("outcome"),
        receipt_check=None if receipt is None else receipt.get("failedCheck"),
    )
    digest, length, *attachments = list(payload)
    return Header(
        fields=fields,
        signing_key_id=sender.get("signingKeyId", ""),
        wrapped_keys=wrapped_keys,
        segment_size=int(payload.get("segmentSize", "")),
        ciphertext_sha256=digest.text or "",
        ciphertext_length=int(length.text or ""),
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        attachments=tuple(
            SealedAttachment(a[0].text or "", int(a[1].text or "")) for a in attachments
        ),
    )
