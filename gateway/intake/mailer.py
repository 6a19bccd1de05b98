"""Outbound mail through the configured relay: acknowledgements and notices.

smtplib blocks, so each delivery runs in a worker thread. With
``starttls = true`` the relay's certificate is verified (against
``ca_file`` when given, else the system CAs) under gateway/infra/tls.py's
rules (TLS 1.3, or 1.2 with ECDHE and AEAD suites);
a relay that does not offer STARTTLS is an error, never a silent
downgrade. A `pgp` domain's acknowledgement is encrypted to the pinned key
that signed the mail.
"""

from __future__ import annotations

import asyncio
import smtplib

import structlog

from gateway.config.intake_config import Policy, Relay
from gateway.infra import tls
from gateway.infra.clock import utc_now
from gateway.intake import replies
from gateway.intake.acceptance import Accepted
from gateway.intake.pgp import Keyring

log = structlog.get_logger("gateway.intake.mailer")


class Mailer:
    def __init__(self, relay: Relay, hostname: str, keyring: Keyring) -> None:
        self.relay = relay
        self.hostname = hostname
        self.keyring = keyring

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
        heading = replies.Heading(
            self.relay.sender, to, subject, utc_now(), self.hostname, reply_to, auto_submitted
        )
        if encrypt_to:
            armored = await self.keyring.encrypt(entity, encrypt_to)
            data = replies.encrypted(heading, armored)
        else:
            data = replies.plain(heading, entity)
        await asyncio.to_thread(self._deliver, to, data)

    def _deliver(self, to: str, data: bytes) -> None:
        with smtplib.SMTP(self.relay.host, self.relay.port, self.hostname, timeout=30) as client:
            if self.relay.starttls:
                client.starttls(context=tls.client_context(self.relay.ca_file))
                client.ehlo()
            client.sendmail(self.relay.sender, [to], data)
