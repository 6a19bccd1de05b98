"""A free-text mail as a Referral flagged for manual triage (referral.xsd ManualTriage).

Pure: the parsed mail and what the intake knows (when it arrived, the From
address it checked) in, canonical XML out, or a TriageError saying what to
change. A partner who writes in their own words, with or without files, names
no subjects, concerns or consent the gateway could check, so the Referral does
not claim any: it carries the text as written, the From address and the
subject line, and a worker in the hub re-keys it. The mail's files travel as
the message's attachments (``mail_files``; the edge names them in the
Referral's Attachments element), as every mail's do.

Purpose and lawful bases: a free-text mail states none, so the intake states
child safeguarding under UK GDPR Art 6(1)(e) and Art 9(2)(g) with DPA 2018
Sch 1 para 18, the bases every safeguarding partner shares with the hub. The
router's agreements still decide whether the share is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses

from lxml import etree

from gateway.core.attachments import safe_file_names
from gateway.core.xmlsafe import NOT_XML_CHARACTER

NS = "urn:mash-gateway:v1"
PURPOSE = "child-safeguarding"
LAWFUL_BASES = ("uk-gdpr-6-1-e", "uk-gdpr-9-2-g-dpa-sch1-18")
MAX_TEXT = 100_000  # referral.xsd TriageText
MAX_SUBJECT = 200  # common.xsd ShortText
MEDIA_WORD = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]{0,126}"
MEDIA_TYPE = re.compile(f"{MEDIA_WORD}/{MEDIA_WORD}")  # common.xsd MediaType
ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # common.xsd EmailAddress


class TriageError(ValueError):
    """The mail cannot become a triage Referral; the text says what the sender can change."""


@dataclass(frozen=True)
class MailFile:
    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class FreeText:
    text: str
    subject: str | None
    sender: str | None  # the From header of the entity, when it has one
    files: tuple[MailFile, ...]


def text_of(part: Message) -> str:
    """A text part decoded by its charset; an unknown or wrong charset falls back to UTF-8.

    ValueError covers a text that does not decode (UnicodeError) and a charset name
    no codec could have (one holding NUL, which the codec lookup refuses so)."""
    data = part.get_payload(decode=True)
    raw = data if isinstance(data, bytes) else b""
    try:
        return raw.decode(part.get_content_charset() or "us-ascii")
    except (LookupError, ValueError):
        return raw.decode("utf-8", errors="replace")


def free_text(message: EmailMessage) -> FreeText | None:
    """The body text and every other leaf part as a file; None without a plain-text body."""
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return None
    senders = [a for _, a in getaddresses(message.get_all("From", [])) if a]
    return FreeText(
        text_of(body),
        _subject(str(message.get("Subject", ""))),
        senders[0] if len(senders) == 1 else None,
        mail_files(message, (body,)),
    )


def mail_files(message: Message, kept: Sequence[Message]) -> tuple[MailFile, ...]:
    """Every leaf part but ``kept`` (the body, the document) as a file, named safely
    (core/attachments.py ``safe_file_names``).

    An HTML part that is not an attachment is the body's other rendering, not a file.
    """
    parts = [
        part
        for part in message.walk()
        if not part.is_multipart()
        and not any(part is k for k in kept)
        and not (part.get_content_type() == "text/html" and part.get_content_disposition() is None)
    ]
    names = safe_file_names([_decoded(part.get_filename()) for part in parts])
    files = []
    for part, name in zip(parts, names, strict=True):
        data = part.get_payload(decode=True)
        files.append(
            MailFile(
                name, _media_type(part.get_content_type()), data if isinstance(data, bytes) else b""
            )
        )
    return tuple(files)


def _decoded(name: str | None) -> str | None:
    """A file name with its RFC 2047 encoded words decoded (the compat32 policy leaves them)."""
    if name is None or "=?" not in name:
        return name
    try:
        return str(make_header(decode_header(name)))
    except (HeaderParseError, LookupError, UnicodeError):
        return name


def _media_type(given: str) -> str:
    return given if MEDIA_TYPE.fullmatch(given) else "application/octet-stream"


def _subject(given: str) -> str | None:
    flat = " ".join(NOT_XML_CHARACTER.sub("\ufffd", given).split())[:MAX_SUBJECT].strip()
    return flat or None


def referral(mail: FreeText, received_at: datetime, sender: str | None) -> bytes:
    """The Referral with ManualTriage; ``sender`` is the From address the intake checked."""
    text = NOT_XML_CHARACTER.sub("\ufffd", mail.text.replace("\r\n", "\n")).strip()
    if not text:
        raise TriageError("the mail has no text: write what the referral is about")
    if len(text) > MAX_TEXT:
        raise TriageError(f"the text is over {MAX_TEXT} characters: send the rest as an attachment")
    address = sender or mail.sender
    if (
        address is None
        or ADDRESS.fullmatch(address) is None
        or NOT_XML_CHARACTER.search(address)
        or len(address) > 254
    ):
        raise TriageError("the mail needs one From address to reply to")
    root = etree.Element(f"{{{NS}}}Referral", nsmap={None: NS})  # type: ignore[dict-item]
    root.set("schemaVersion", "1.0")
    _add(root, "ContactReceivedAt", received_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    triage = _add(root, "ManualTriage")
    _add(triage, "From", address)
    if mail.subject is not None:
        _add(triage, "MailSubject", mail.subject)
    _add(triage, "Text", text)
    _add(root, "Purpose", PURPOSE)
    for basis in LAWFUL_BASES:
        _add(root, "LawfulBasis", basis)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{NS}}}{tag}")
    child.text = text
    return child
