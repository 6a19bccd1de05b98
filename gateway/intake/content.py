"""What a mail carries, as one canonical XML payload.

Pure: the authenticated MIME entity in, the payload (or a Refusal) out. A
mail carries exactly one of, in this order: a canonical XML attachment
(application/xml or text/xml); a plain-text form (forms.py) in its text body;
or free text, which becomes a Referral flagged for manual triage (triage.py).
Every other part of the mail (but the text body's HTML rendering) is a file
that travels with the message as an attachment (``Payload.files``, named
safely; at most MAX_ATTACHMENTS). The payload is then schema-checked here, so a
sender hears about a bad document in the SMTP reply, not later; the edge
takes the checked document as it is (schemas.CheckedDocument) instead of
checking it again. Reasons are redacted: they name the element and the check,
never a value from the document or the mail's text.

The entity is read with the email package's compat32 policy, as mime.py reads
the PGP/MIME structure: finding the parts and decoding an attachment needs no
more, and policy.default builds a parsed header object on every header read:
with it this step cost 1.3 ms of CPU for the benchmark's Referral, the
largest Python cost of an accepted mail, and 0.4 ms without. Only a free-text
mail, whose Referral quotes the subject and From decoded, is read again with
policy.default; file names are decoded one by one (triage.mail_files).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from gateway.core import schemas
from gateway.core.attachments import ATTACHMENT_TYPES
from gateway.core.schemas import CheckedDocument, SchemaViolation
from gateway.core.xmlsafe import UnsafeXmlError
from gateway.intake import forms, triage
from gateway.intake.refusal import Refusal

XML_TYPES = frozenset({"application/xml", "text/xml"})
MAX_ATTACHMENTS = 100  # common.xsd Attachments


@dataclass(frozen=True)
class Payload:
    document: CheckedDocument
    carried_as: str  # "xml-attachment", "form" or "free-text"
    in_reply_to: str | None = None
    correlation_id: str | None = None
    files: tuple[triage.MailFile, ...] = ()  # the mail's other parts: the message's attachments

    @property
    def xml(self) -> bytes:
        return self.document.xml

    @property
    def message_type(self) -> str:
        return self.document.message_type


def _parts(message: Message) -> list[Message]:
    return [part for part in message.walk() if not part.is_multipart()]


def _bytes_of(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def payload_of(
    content: bytes, received_at: datetime, agency: str, sender: str | None = None
) -> Payload | Refusal:
    """The canonical payload the authenticated entity carries.

    ``sender`` is the From address the intake checked; a triage Referral records it
    (without it, the entity's own From header, which a signed part rarely has).
    """
    message = BytesParser(policy=policy.compat32).parsebytes(content)
    parts = _parts(message)
    xml_parts = [p for p in parts if p.get_content_type() in XML_TYPES]
    if len(xml_parts) > 1:
        return Refusal(
            550, "5.6.0", "Send one canonical XML document per mail, not several", "xml-count"
        )
    text = next(
        (
            p
            for p in parts
            if p.get_content_type() == "text/plain" and p.get_content_disposition() != "attachment"
        ),
        None,
    )
    kept = [part for part in (*xml_parts, text) if part is not None]
    if xml_parts:
        return with_files(checked(_bytes_of(xml_parts[0]), "xml-attachment"), message, kept)
    if text is not None:
        body = triage.text_of(text)
        if forms.is_form(body):
            return with_files(_form(body, received_at, agency), message, kept)
    full = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(full, EmailMessage)
    free = triage.free_text(full)
    if free is None:
        return Refusal(
            550,
            "5.6.0",
            "The mail carries no canonical XML attachment (application/xml), no form "
            "(a text body starting 'Form: Referral' or 'Form: InformationResponse') "
            "and no plain-text body to triage",
            "no-payload",
        )
    triaged = _triage(free, received_at, sender)
    return triaged if isinstance(triaged, Refusal) else attached(triaged, free.files)


def with_files(
    payload: Payload | Refusal, message: Message, kept: list[Message]
) -> Payload | Refusal:
    """The payload with the mail's other parts as its files; the parts are only read when
    the mail has more than its document and text."""
    if isinstance(payload, Refusal) or len(_parts(message)) == len(kept):
        return payload
    return attached(payload, triage.mail_files(message, kept))


def attached(payload: Payload, files: tuple[triage.MailFile, ...]) -> Payload | Refusal:
    if not files:
        return payload
    if payload.message_type not in ATTACHMENT_TYPES:
        return Refusal(
            550,
            "5.6.0",
            f"A {payload.message_type} carries no attachments: send the files with a "
            f"{', '.join(sorted(ATTACHMENT_TYPES))}",
            "attachments",
        )
    if len(files) > MAX_ATTACHMENTS:
        return Refusal(
            550, "5.6.0", f"The mail has over {MAX_ATTACHMENTS} attachments", "attachments"
        )
    return replace(payload, files=files)


def _triage(free: triage.FreeText, received_at: datetime, sender: str | None) -> Payload | Refusal:
    try:
        xml = triage.referral(free, received_at, sender)
    except triage.TriageError as exc:
        return Refusal(550, "5.6.0", f"Free-text referral: {exc}", "free-text")
    return checked(xml, "free-text")


def _form(body: str, received_at: datetime, agency: str) -> Payload | Refusal:
    try:
        filled = forms.fill(body, received_at, agency)
    except forms.FormError as exc:
        return Refusal(550, "5.6.0", f"Form field {exc.field}: {exc.problem}", "form-field")
    payload = checked(filled.xml, "form")
    if isinstance(payload, Refusal):
        return payload
    return replace(payload, in_reply_to=filled.in_reply_to, correlation_id=filled.correlation_id)


def checked(xml: bytes, carried_as: str) -> Payload | Refusal:
    """Schema-check a payload; the refusal names the element and check, no values."""
    try:
        document = schemas.checked(xml, carried_as)
    except SchemaViolation as exc:
        return Refusal(
            550,
            "5.6.0",
            f"The document fails its schema: {_one_line(exc.redacted())}",
            "payload-schema",
        )
    except UnsafeXmlError as exc:
        return Refusal(
            550,
            "5.6.0",
            f"The document is not well-formed, safe XML: {_one_line(str(exc))}",
            "payload-unsafe",
        )
    return Payload(document, carried_as)


def _one_line(text: str) -> str:
    """SMTP replies are single lines; keep them short."""
    flat = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= 300 else flat[:297] + "..."
