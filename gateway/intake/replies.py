"""The mails the intake sends: acknowledgements, non-delivery notices and information requests.

Pure: ids, types, check names and documents in, RFC 5322 bytes out.
Acknowledgements and notices carry the message id, type, case id and
checks, never content of the original mail, so they are safe even where
they travel on TLS alone. An information request carries the request
document itself, so for a `pgp` agency it is only ever sent encrypted. The
files that travelled with a request or reminder are attachments of the same
entity, under their own names and media types. The caller encrypts the
inner entity; ``encrypted`` wraps the ciphertext as PGP/MIME (RFC 3156).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from gateway.intake import forms


@dataclass(frozen=True)
class Heading:
    sender: str
    to: str
    subject: str
    now: datetime
    domain: str  # for the Message-ID
    reply_to: str | None = None
    auto_submitted: str = "auto-replied"  # RFC 3834: no auto-reply loops


@dataclass(frozen=True)
class MailedFile:
    """A file to attach: its name and media type as the message's payload states them."""

    name: str
    media_type: str  # type/subtype (schemas/common.xsd MediaType)
    data: bytes


def acknowledgement(
    message_type: str, message_id: str, case_id: str, assurance: str
) -> tuple[str, str]:
    """(subject, body) telling the sender their mail is on the exchange."""
    return (
        f"Accepted: {message_type} {message_id}",
        f"Your mail was accepted by the MASH secure-mail intake and is on the exchange.\r\n\r\n"
        f"Message id: {message_id}\r\nMessage type: {message_type}\r\nCase: {case_id}\r\n"
        f"Assurance: {assurance}\r\n\r\n"
        "Quote the message id in any follow-up.\r\n",
    )


def non_delivery(message_id: str, check: str, reason: str) -> tuple[str, str]:
    """(subject, body) telling the sender a mail accepted earlier was refused on the exchange."""
    return (
        f"Not delivered: {message_id}",
        "A mail the MASH secure-mail intake accepted was refused on the exchange and was "
        "NOT delivered.\r\n\r\n"
        f"Message id: {message_id}\r\nFailed check: {check}\r\nReason: {reason}\r\n\r\n"
        "Nothing further will happen with it; contact the hub if you need to resend.\r\n",
    )


def request_body(request_id: str, case_id: str, requester: str, due: datetime | None) -> str:
    """The text of a mailed information request: how to answer, and the form, pre-filled."""
    form = forms.template("InformationResponse")
    form = form.replace("Request-Id:", f"Request-Id: {request_id}", 1)
    form = form.replace("Case-Id:", f"Case-Id: {case_id}", 1)
    form = "\n".join(
        line.split("    #")[0].rstrip() if line.startswith(("Request-Id:", "Case-Id:")) else line
        for line in form.splitlines()
    )
    when = f"An answer is due by {due:%Y-%m-%d %H:%M} UTC.\n\n" if due else ""
    return (
        f"{requester} asks for information; the request is attached (request.xml).\n\n{when}"
        "Answer by replying to this mail (it goes to a reply address made for this request), "
        "with the form below filled in as the text of your reply, or with a canonical "
        "InformationResponse XML attached. Lines left with their '# hint' count as empty.\n\n"
        f"{form}"
    )


def text_entity(body: str) -> bytes:
    """A text/plain entity (what gets encrypted for a `pgp` domain)."""
    message = EmailMessage(policy=SMTP)
    message.set_content(body)
    return message.as_bytes()


def text_with_xml(body: str, xml: bytes, filename: str, files: Sequence[MailedFile] = ()) -> bytes:
    """A multipart/mixed entity: the text, the document as an XML attachment, then ``files``."""
    return text_with_files(body, (MailedFile(filename, "application/xml", xml), *files))


def text_with_files(body: str, files: Sequence[MailedFile]) -> bytes:
    """The text, then each file as a base64 attachment (a text/plain entity when none)."""
    message = EmailMessage(policy=SMTP)
    message.set_content(body)
    for file in files:
        maintype, _, subtype = file.media_type.partition("/")
        message.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.name)
    return message.as_bytes()


def plain(heading: Heading, entity: bytes) -> bytes:
    """The heading's header fields, then the entity (its own headers continue the block)."""
    return _head(heading) + b"\r\n" + entity


def encrypted(heading: Heading, armored: bytes) -> bytes:
    """A multipart/encrypted message around ``armored`` (an encrypted entity)."""
    boundary = f"mash-{uuid.uuid4().hex}"
    ciphertext = armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        _head(heading)
        + (
            f"\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            f' boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            f"\r\n--{boundary}\r\n"
            'Content-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
        ).encode()
        + ciphertext
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _head(heading: Heading) -> bytes:
    """The header block without its closing empty line."""
    message = EmailMessage(policy=SMTP)
    message["From"] = heading.sender
    message["To"] = heading.to
    if heading.reply_to:
        message["Reply-To"] = heading.reply_to
    message["Subject"] = heading.subject
    message["Date"] = format_datetime(heading.now)
    message["Message-ID"] = make_msgid(domain=heading.domain)
    message["Auto-Submitted"] = heading.auto_submitted
    return message.as_bytes().rstrip(b"\r\n")
