"""Outbound mail through the configured relay: acknowledgements and notices.

smtplib blocks, so each delivery runs in a worker thread. With
``starttls = true`` the relay's certificate is verified (against
``ca_file`` when given, else the system CAs) under gateway/infra/tls.py's
rules (TLS 1.3, or 1.2 with ECDHE and AEAD suites);
a relay that does not offer STARTTLS is an error, never a silent
downgrade. A `pgp` domain's acknowledgement is encrypted to the pinned key
that signed the mail.

A mail is never sent larger than ``max_bytes`` (the intake's
``max_message_bytes``: what it takes in, it sends out) nor than the SIZE the
relay advertises (RFC 1870); one that would be, or that the relay refuses
with 552, raises MailTooLarge before any of its recipients got it, so the
caller can tell whoever sent the content instead of sending it cut.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Sequence

import structlog

from gateway.config.intake_config import Policy, Relay
from gateway.core.errors import GatewayError
from gateway.infra import tls
from gateway.infra.clock import utc_now
from gateway.intake import replies
from gateway.intake.acceptance import Accepted
from gateway.intake.pgp import Keyring

log = structlog.get_logger("gateway.intake.mailer")


class MailTooLarge(GatewayError):
    """A mail over the intake's or the relay's size limit; nobody was sent it."""


class Mailer:
    def __init__(
        self, relay: Relay, hostname: str, keyring: Keyring, max_bytes: int | None = None
    ) -> None:
        self.relay = relay
        self.hostname = hostname
        self.keyring = keyring
        self.max_bytes = max_bytes

    async def acknowledge(self, accepted: Accepted) -> None:
        fields = accepted.fields
        subject, body = replies.acknowledgement(
            fields.message_type, fields.message_id, fields.correlation_id, accepted.assurance
        )
        encrypt_to = (
            (accepted.signer,) if accepted.rule.policy is Policy.PGP and accepted.signer else ()
        )
        await self.send(accepted.from_address, subject, replies.text_entity(body), encrypt_to)
        log.info("intake.acknowledged", message_id=fields.message_id, encrypted=bool(encrypt_to))

    async def send(
        self,
        to: str,
        subject: str,
        entity: bytes,
        encrypt_to: tuple[str, ...],
        reply_to: str | None = None,
        auto_submitted: str = "auto-replied",
    ) -> None:
        """Mail ``entity``; encrypted (PGP/MIME) to ``encrypt_to`` when it names any key."""
        await self.send_each((to,), subject, entity, encrypt_to, reply_to, auto_submitted)

    async def send_each(
        self,
        to: Sequence[str],
        subject: str,
        entity: bytes,
        encrypt_to: tuple[str, ...],
        reply_to: str | None = None,
        auto_submitted: str = "auto-replied",
    ) -> None:
        """Mail ``entity`` to each address, encrypted once; every mail is built and checked
        against ``max_bytes`` before the first goes, so a too-large one reaches nobody."""
        armored = await self.keyring.encrypt(entity, encrypt_to) if encrypt_to else None
        mails = []
        for address in to:
            heading = replies.Heading(
                self.relay.sender,
                address,
                subject,
                utc_now(),
                self.hostname,
                reply_to,
                auto_submitted,
            )
            if armored is not None:
                data = replies.encrypted(heading, armored)
            else:
                data = replies.plain(heading, entity)
            if self.max_bytes is not None and len(data) > self.max_bytes:
                raise MailTooLarge(
                    f"the mail is {len(data)} bytes; the intake sends at most {self.max_bytes} "
                    "([intake] max_message_bytes)"
                )
            mails.append((address, data))
        for address, data in mails:
            await asyncio.to_thread(self._deliver, address, data)

    def _deliver(self, to: str, data: bytes) -> None:
        with smtplib.SMTP(self.relay.host, self.relay.port, self.hostname, timeout=30) as client:
            if self.relay.starttls:
                client.starttls(context=tls.client_context(self.relay.ca_file))
            client.ehlo()
            advertised = client.esmtp_features.get("size", "") if client.does_esmtp else ""
            if advertised.isdigit() and 0 < int(advertised) < len(data):
                raise MailTooLarge(
                    f"the mail is {len(data)} bytes; the relay takes at most {advertised} (SIZE)"
                )
            try:
                client.sendmail(self.relay.sender, [to], data)
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                if exc.smtp_code != 552:
                    raise
                raise MailTooLarge(
                    f"the relay refused a mail of {len(data)} bytes as too big (552)"
                ) from None
