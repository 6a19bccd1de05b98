"""The inbox of an e-mail-only agency, taken by the intake: notices go back out by mail.

When a domain's rule says ``inbox = true`` the agency has no system of its
own, so the intake is its edge consumer. A NonDelivery or a negative
receipt for a mail the intake accepted becomes a non-delivery mail to the
person who sent it (encrypted to their pinned key when the mail was
PGP-signed), or, when the intake no longer remembers the sender (after a
restart), to the agency's registered contacts; it carries ids and check
names only. Positive receipts need no mail: the acknowledgement said so.
An InformationRequest is mailed to the agency's contacts (PGP-encrypted to
every pinned staff key for a `pgp` domain, TLS-only otherwise), with the
request attached, the answer form pre-filled, and a reply-token Reply-To
address (reply_tokens.py) that makes the answer an InformationResponse to it.
A reminder or escalation (Escalation) is mailed to the contacts the same
way. Anything else cannot be mailed: it is not handed over, so the edge
redelivers it and, past the inbox's delivery limit, RabbitMQ quarantines it.
It is never lost or falsely receipted.

Files that travelled with a request or reminder (README "Attachments") are
attachments of the same mail, inside the encryption for a `pgp` domain,
under the names and media types the payload states. A mail can only be so
large: the intake's ``max_message_bytes``, and the relay's own limit
(mailer.py). When the files would make it larger, the message is refused,
not mailed without them: the agency must never act on a request whose
documents it was not given, and the sender must learn it. The edge answers
the sender with a negative receipt (check ``handler``) naming the mail's
size and the limit, so the files can go by another channel, and the message
is quarantined. Files whose base64 alone exceeds the limit are refused from
their sizes, before a byte is read, so the intake never holds more than
about one mail's worth of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from gateway.config.intake_config import DomainRule, Policy
from gateway.core.errors import GatewayError
from gateway.intake import replies, reply_tokens
from gateway.intake.acceptance import Acceptance
from gateway.intake.bounces import bounce_of
from gateway.intake.mailer import Mailer, MailTooLarge
from gateway.intake.reminders import reminder_mail
from gateway.services.edge import Delivered, HandlerRefused
from gateway.services.transfer_staging import ReceivedAttachment

log = structlog.get_logger("gateway.intake.inbox")


class NotMailable(GatewayError):
    """A message type the intake cannot deliver by mail (yet)."""


class FilesTooLargeForMail(HandlerRefused):
    """The message's files would make a mail over the limit: refused, the sender told why."""


def base64_size(size: int) -> int:
    """The fewest bytes ``size`` bytes take in base64, line breaks not counted."""
    return (size + 2) // 3 * 4


def mailed_files(
    files: Sequence[ReceivedAttachment], max_bytes: int | None
) -> tuple[replies.MailedFile, ...]:
    """The files read for attaching; refused from their sizes alone when they cannot fit.

    Blocking file reads: call it from a thread.
    """
    total = sum(file.facts.size for file in files)
    if max_bytes is not None and base64_size(total) > max_bytes:
        raise MailTooLarge(
            f"the files ({total} bytes) need at least {base64_size(total)} bytes as mail; "
            f"the intake sends at most {max_bytes} ([intake] max_message_bytes)"
        )
    return tuple(
        replies.MailedFile(file.facts.file_name, file.facts.media_type, file.path.read_bytes())
        for file in files
    )


class NoticeInbox:
    def __init__(
        self,
        rule: DomainRule,
        contacts: tuple[str, ...],
        acceptance: Acceptance,
        mailer: Mailer,
        reply_key: bytes | None,
    ) -> None:
        self.rule = rule
        self.agency = rule.agency
        self.contacts = contacts
        self.acceptance = acceptance
        self.mailer = mailer
        self.reply_key = reply_key

    async def __call__(self, delivered: Delivered) -> None:
        fields = delivered.header.fields
        if fields.message_type == "DeliveryReceipt" and fields.receipt_outcome == "positive":
            return
        if fields.message_type == "InformationRequest":
            await self._mail_request(delivered)
            return
        if fields.message_type == "Escalation":
            await self._mail_reminder(delivered)
            return
        bounce = bounce_of(
            fields.message_type,
            delivered.payload,
            fields.in_reply_to,
            fields.receipt_outcome,
            fields.receipt_check,
        )
        if bounce is None:
            raise NotMailable(f"{fields.message_type} cannot be delivered by mail to {self.agency}")
        subject, body = replies.non_delivery(bounce.message_id, bounce.check, bounce.reason)
        entity = replies.text_entity(body)
        sender = self.acceptance.senders.get(bounce.message_id)
        if sender is not None:
            keys = (sender.signer,) if sender.signer else ()
            await self.mailer.send(sender.from_address, subject, entity, keys)
        else:
            for contact in self.contacts:
                await self.mailer.send(contact, subject, entity, ())
        log.info(
            "intake.non_delivery_mailed",
            message_id=bounce.message_id,
            check=bounce.check,
            to_sender=sender is not None,
        )

    async def _mail_request(self, delivered: Delivered) -> None:
        """The request, to the agency's contacts, with a reply-token Reply-To for the answer."""
        fields = delivered.header.fields
        keys = tuple(s.fingerprint for s in self.rule.staff)
        if (
            self.reply_key is None
            or not self.contacts
            or (self.rule.policy is Policy.PGP and not keys)
        ):
            raise NotMailable(
                f"InformationRequest to {self.agency}: needs a reply key, a contact address "
                "and, for a pgp domain, a registered staff key"
            )
        token = reply_tokens.ReplyToken(fields.message_id, fields.sender, self.agency)
        reply_to = f"{reply_tokens.local_part(self.reply_key, token)}@{self.mailer.hostname}"
        body = replies.request_body(
            fields.message_id, fields.correlation_id, fields.sender, fields.deadline
        )
        files = await self._files(delivered)
        entity = replies.text_with_xml(body, delivered.payload, "request.xml", files)
        encrypt_to = keys if self.rule.policy is Policy.PGP else ()
        subject = f"Information request {fields.message_id}"
        await self._send(entity, subject, encrypt_to, reply_to, len(files))
        log.info(
            "intake.request_mailed",
            message_id=fields.message_id,
            agency=self.agency,
            encrypted=bool(encrypt_to),
            files=len(files),
        )

    async def _mail_reminder(self, delivered: Delivered) -> None:
        """A reminder or escalation to the agency's contacts; it names staff, so pgp encrypts."""
        keys = tuple(s.fingerprint for s in self.rule.staff)
        if not self.contacts or (self.rule.policy is Policy.PGP and not keys):
            raise NotMailable(
                f"Escalation to {self.agency}: needs a contact address and, for a pgp domain, "
                "a registered staff key"
            )
        subject, body = reminder_mail(delivered.payload, self.agency)
        files = await self._files(delivered)
        encrypt_to = keys if self.rule.policy is Policy.PGP else ()
        entity = replies.text_with_files(body, files)
        await self._send(entity, subject, encrypt_to, None, len(files))
        log.info(
            "intake.reminder_mailed",
            message_id=delivered.header.fields.message_id,
            agency=self.agency,
            encrypted=bool(encrypt_to),
            files=len(files),
        )

    async def _files(self, delivered: Delivered) -> tuple[replies.MailedFile, ...]:
        try:
            return await asyncio.to_thread(
                mailed_files, delivered.attachments, self.mailer.max_bytes
            )
        except MailTooLarge as exc:
            raise self._too_large(exc, len(delivered.attachments)) from None

    def _too_large(self, exc: MailTooLarge, files: int) -> FilesTooLargeForMail:
        return FilesTooLargeForMail(
            f"not mailed to {self.agency}: with its {files} file(s), {exc}; "
            "send the files by another channel"
        )

    async def _send(
        self,
        entity: bytes,
        subject: str,
        encrypt_to: tuple[str, ...],
        reply_to: str | None,
        files: int,
    ) -> None:
        """To every contact, or to none: a mail too large for the limit refuses the message."""
        try:
            await self.mailer.send_each(
                self.contacts, subject, entity, encrypt_to, reply_to, "auto-generated"
            )
        except MailTooLarge as exc:
            raise self._too_large(exc, files) from None
