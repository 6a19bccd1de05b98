"""The demo's e-mail-only agency: housing's officer, their mail client and their mail server.

Housing has no case system, only e-mail and a PGP key (area.py). A
deployment owns neither end of that mail; the demo plays both, so the round
trip runs on one machine:

- the officer's GnuPG home (``agency-systems/housing/gnupg``, 0700) holds
  their key, which `init` makes and pins under housing's ``staff``, and the
  intake's public key;
- housing's mail server (``MailServer``) is the relay the intake mails
  through: a STARTTLS SMTP server on a free port that keeps what it is given;
- the officer's answer (``Officer.answer``): decrypt the mailed request, fill
  in the form it carries, sign that (RFC 3156), encrypt it to the intake, and
  send it to the request's reply-token address over STARTTLS, verifying the
  intake's certificate.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import gnupg
from aiosmtpd.smtp import SMTP, Envelope

from gateway.config.intake_config import IntakeConfig
from gateway.core.errors import GatewayError
from gateway.demo.area import MAIL_ONLY_AGENCY, MAIL_ONLY_DOMAIN
from gateway.infra import tls
from gateway.infra.clock import utc_now
from gateway.intake import devkeys, forms, replies
from gateway.intake.pgp import usable_home

OFFICER_NAME = "Housing options officer"
OFFICER = f"housing.officer@{MAIL_ONLY_DOMAIN}"
OFFICER_HOME = Path("agency-systems", MAIL_ONLY_AGENCY, "gnupg")  # under the area
FORM_START = "Form: InformationResponse"


class DemoMailError(GatewayError):
    """The demo's mail round trip went wrong; the text says at which step."""


def create_officer(area: Path) -> str:
    """The officer's GnuPG home and key, before the area's config is written; their fingerprint."""
    fingerprint, _ = devkeys.create_home_with_key(area / OFFICER_HOME, OFFICER_NAME, OFFICER)
    return fingerprint


def introduce(area: Path, intake: IntakeConfig) -> None:
    """Each side gets the other's public key: the intake the officer's (the pin in the config
    says what it may do), the officer the intake's (to encrypt answers to)."""
    officer = _gpg(area / OFFICER_HOME)
    gateway = _gpg(intake.gnupg_home)
    gateway.import_keys(officer.export_keys(OFFICER))
    officer.import_keys((area / "keys" / devkeys.PUBLIC_KEY_NAME).read_text(encoding="ascii"))
    for home in (area / OFFICER_HOME, intake.gnupg_home):
        devkeys.stop_agent(home)


def _gpg(home: Path) -> gnupg.GPG:
    return gnupg.GPG(gnupghome=str(usable_home(home)))


def multipart_signed(content: bytes, signature: bytes) -> bytes:
    """RFC 3156 multipart/signed: ``content`` exactly as signed, then the detached signature."""
    boundary = f"sig-{uuid.uuid4().hex}"
    armored = signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        (
            "Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
            ' protocol="application/pgp-signature";'
            f' boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
        ).encode()
        + content
        + (
            f"\r\n--{boundary}\r\n"
            'Content-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'
        ).encode()
        + armored
        + f"\r\n--{boundary}--\r\n".encode()
    )


@dataclass
class MailServer:
    """A mail server that keeps what it is given: (envelope sender, recipients, raw bytes).

    ``arrivals`` hands each mail on to whoever reads the mailbox."""

    port: int = 0
    mails: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    arrivals: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.mails.append((envelope.mail_from or "", list(envelope.rcpt_tos), raw))
        self.arrivals.put_nowait(raw)
        return "250 2.0.0 Delivered"


@asynccontextmanager
async def mail_server(cert: Path, key: Path) -> AsyncIterator[MailServer]:
    """A real SMTP server on a free port of 127.0.0.1 that requires STARTTLS (infra/tls.py)."""
    context = tls.server_context(cert, key)
    server = MailServer()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: SMTP(server, tls_context=context, require_starttls=True, decode_data=False),
        "127.0.0.1",
        0,
    )
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@dataclass(frozen=True)
class Officer:
    """Housing's officer at their mail client: reads requests, answers them by signed mail."""

    home: Path
    intake_key: str  # the intake's key (its address): answers are encrypted to it
    intake_port: int
    intake_ca: Path  # the certificate the intake's STARTTLS must present

    def decrypted(self, outer: EmailMessage) -> EmailMessage:
        """The inner entity of a PGP/MIME mail to the officer."""
        part = next(
            (p for p in outer.walk() if p.get_content_type() == "application/octet-stream"), None
        )
        if part is None:
            raise DemoMailError("the mail to housing is not PGP/MIME encrypted")
        result = _gpg(self.home).decrypt(part.get_payload(decode=True))
        if not result.ok:
            raise DemoMailError(f"housing's officer cannot decrypt the mail: {result.status}")
        return parsed(bytes(result.data))

    def answer(self, outer: EmailMessage, answers: Mapping[str, str]) -> tuple[int, str]:
        """Reply to a mailed request with its form filled in; the intake's reply to DATA."""
        reply_to, subject = str(outer["Reply-To"] or ""), str(outer["Subject"] or "")
        text = next(
            (p for p in self.decrypted(outer).walk() if p.get_content_type() == "text/plain"), None
        )
        body = text.get_content() if text is not None else ""
        if not reply_to or FORM_START not in body:
            raise DemoMailError("the mailed request has no reply address or no answer form")
        form = forms.fill_in(body[body.index(FORM_START) :], answers)
        content = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + form.replace(
            "\n", "\r\n"
        ).encode("utf-8")
        gpg = _gpg(self.home)
        signature = gpg.sign(content, keyid=OFFICER, detach=True, binary=False)
        encrypted = gpg.encrypt(
            multipart_signed(content, bytes(signature.data)),
            [self.intake_key],
            always_trust=True,  # the intake's key came with the area, not from a keyserver
            armor=True,
        )
        if not signature.data or not encrypted.ok:
            raise DemoMailError(f"housing's officer cannot sign and encrypt: {encrypted.status}")
        heading = replies.Heading(
            OFFICER, reply_to, f"Re: {subject}", utc_now(), MAIL_ONLY_DOMAIN, None, "no"
        )
        data = replies.encrypted(heading, bytes(encrypted.data))
        context = tls.client_context(self.intake_ca)
        return send_over_starttls(self.intake_port, context, OFFICER, reply_to, data)


def send_over_starttls(
    port: int, context: ssl.SSLContext, mail_from: str, rcpt: str, data: bytes
) -> tuple[int, str]:
    """One SMTP transaction to 127.0.0.1:``port`` over STARTTLS, as a sending MTA makes it:
    the reply to the first command refused, or to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.starttls(context=context)
        client.ehlo()
        for code, reply in (client.mail(mail_from), client.rcpt(rcpt)):
            if code != 250:
                return code, reply.decode()
        code, reply = client.data(data)
        return code, reply.decode()


def parsed(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message
