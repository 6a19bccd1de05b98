"""The SMTP listener: aiosmtpd with STARTTLS required, the limits, and the intake's replies.

A thin shell. MAIL and RCPT ask sender_policy.py (and MAIL, for a domain
that authenticates by client certificate, partner_auth.py); DATA hands the
raw bytes and the session's client certificate to Acceptance. What aiosmtpd
enforces itself (STARTTLS before MAIL or AUTH, the size limit, the
per-command timeout) keeps aiosmtpd's behaviour, with its replies given RFC
3463 enhanced status codes. Added here: a session timeout, a cap on
concurrent connections (a connection over the cap gets 421 and is closed
before any SMTP state exists), and a cap on recipients per transaction
(past it, RFC 5321 section 4.5.3.1.10's ``452`` for each further RCPT, with
RFC 3463's 4.5.3, whose class must match the reply's).

TLS is gateway/infra/tls.py's (TLS 1.3, or 1.2 with ECDHE and AEAD only).
When a domain authenticates by client certificate, the handshake asks
every client for one (optional, so others are unaffected), trusting the
configured ``client_ca`` files and the public CAs to chain it; the pin is
what lets it speak for a domain.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config.intake_config import Authentication, IntakeConfig
from gateway.infra import tls
from gateway.intake import partner_auth, sender_policy
from gateway.intake.acceptance import Acceptance, Accepted, refused
from gateway.intake.mailer import Mailer
from gateway.intake.refusal import Refusal
from gateway.services import metrics

log = structlog.get_logger("gateway.intake.server")

IDENT = "MASH secure-mail intake"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure on our side; nothing was kept, try again later"


def tls_context(config: IntakeConfig) -> ssl.SSLContext:
    """The listener's TLS; asking for client certificates when a domain is pinned to one."""
    by_certificate = [
        rule for rule in config.domains if Authentication.CLIENT_CERTIFICATE in rule.authenticate
    ]
    client_cas = (
        tuple(dict.fromkeys(r.client_ca for r in by_certificate if r.client_ca is not None))
        if by_certificate
        else None
    )
    return tls.server_context(config.tls_cert, config.tls_key, client_cas)


def client_certificate(session: Session) -> str | None:
    """The SHA-256 (upper-case hex) of the certificate the client presented, if any."""
    extra = session.ssl or {}
    ssl_object = extra.get("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest().upper() if der else None


def enhanced(reply: str, max_bytes: int) -> str:
    """aiosmtpd's own replies for the limits it enforces, with enhanced status codes."""
    if reply.startswith("530 Must issue a STARTTLS"):
        return "530 5.7.0 Must issue a STARTTLS command first (TLS 1.2 or later is required)"
    if reply.startswith("552 "):
        return f"552 5.3.4 Message too big for this intake (limit {max_bytes} bytes)"
    if reply.startswith("500 Line too long"):
        return "500 5.5.2 Line too long (RFC 5321 section 4.5.3.1.6)"
    return reply


class ReplyLines:
    """The lines of one reply, held until its last (RFC 5321 section 4.2.1: ``250-`` says
    more follow), so that a multi-line reply (EHLO's) goes out in one write: aiosmtpd
    pushes it line by line, a TLS record and a send each."""

    def __init__(self) -> None:
        self._held: list[str] = []

    def add(self, line: str) -> str | None:
        """The whole reply once ``line`` ends it; None while more lines follow."""
        if line[3:4] == "-":
            self._held.append(line)
            return None
        whole = "\r\n".join([*self._held, line])
        self._held.clear()
        return whole


class Handler:
    """aiosmtpd hooks: the envelope checks, and DATA through Acceptance."""

    def __init__(
        self,
        config: IntakeConfig,
        acceptance: Acceptance,
        mailer: Mailer | None,
        reply_key: bytes | None,
    ) -> None:
        self.config = config
        self.acceptance = acceptance
        self.mailer = mailer
        self.reply_key = reply_key
        self._sending: set[asyncio.Task[None]] = set()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        rule = sender_policy.sender_rule(address, self.config)
        if isinstance(rule, Refusal):
            refused(rule)
            return rule.reply
        uncertified = partner_auth.certificate_refusal(rule, client_certificate(session))
        if uncertified is not None:
            refused(uncertified)
            return uncertified.reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            too_many = Refusal(
                452,
                "4.5.3",
                f"Too many recipients: at most {self.config.max_recipients} per transaction; "
                "send to the others in another",
                "recipients",
            )
            refused(too_many)
            return too_many.reply
        found = self._recipient(envelope.mail_from or "", address)
        if isinstance(found, Refusal):
            refused(found)
            return found.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    def _recipient(self, mail_from: str, address: str) -> sender_policy.Recipient | Refusal:
        rule = sender_policy.sender_rule(mail_from, self.config)
        if isinstance(rule, Refusal):
            return rule
        return sender_policy.recipient(address, self.config, rule, self.reply_key)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        found = [self._recipient(mail_from, address) for address in envelope.rcpt_tos]
        recipients = tuple(r for r in found if isinstance(r, sender_policy.Recipient))
        try:
            outcome = await self.acceptance.accept(
                raw, mail_from, recipients, client_certificate(session)
            )
        except Exception:
            log.exception("intake.failed")
            metrics.INTAKE_RESULTS.labels(result="deferred", reason="internal").inc()
            return TEMPORARY_FAILURE
        if isinstance(outcome, Refusal):
            return outcome.reply
        if self.mailer is not None:
            task = asyncio.create_task(self._acknowledge(self.mailer, outcome))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return accepted_reply(outcome)

    async def _acknowledge(self, mailer: Mailer, accepted: Accepted) -> None:
        """After the 250: the message is on the exchange whether or not this mail goes out."""
        try:
            await mailer.acknowledge(accepted)
        except Exception:
            log.exception("intake.acknowledgement_failed", message_id=accepted.fields.message_id)


def accepted_reply(accepted: Accepted) -> str:
    return (
        f"250 2.0.0 Accepted as {accepted.fields.message_type} {accepted.fields.message_id} "
        f"({accepted.assurance})"
    )


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with enhanced replies and a session timeout."""

    def __init__(
        self,
        handler: Handler,
        config: IntakeConfig,
        context: ssl.SSLContext,
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(
            handler,
            data_size_limit=config.max_message_bytes,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=config.hostname,
            ident=IDENT,
            tls_context=context,
            require_starttls=True,
            timeout=config.command_timeout,
            auth_require_tls=True,
        )
        self._limit = config.max_message_bytes
        self._session_timeout = config.session_timeout
        self._session_timer: asyncio.TimerHandle | None = None
        self._on_close = on_close
        self._reply = ReplyLines()

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            rewritten = enhanced(status, self._limit)
            if rewritten != status:  # a limit aiosmtpd enforced: count it like our refusals
                reason = {"530": "starttls", "552": "size", "500": "line-length"}[status[:3]]
                metrics.INTAKE_RESULTS.labels(result="refused", reason=reason).inc()
            whole = self._reply.add(rewritten)
            if whole is None:
                return
            status = whole
        await super().push(status)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._session_timer is None
        super().connection_made(transport)
        if first:  # not again when STARTTLS swaps the transport
            self._session_timer = self.loop.call_later(self._session_timeout, self._expire)

    def connection_lost(self, error: Exception | None) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()
        self._on_close()
        super().connection_lost(error)

    def _expire(self) -> None:
        if self.transport is not None:
            log.info("intake.session_timeout")
            self.transport.close()


class Busy(asyncio.Protocol):
    """What a connection over the cap gets: 421, then the connection is closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.7.0 Too many connections, try again later\r\n")
        transport.close()


class ConnectionCap:
    """Counts open sessions; the protocol factory hands out Busy over the cap."""

    def __init__(self, limit: int, make: Callable[[Callable[[], None]], IntakeSMTP]) -> None:
        self.limit = limit
        self.open = 0
        self._make = make

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit:
            metrics.INTAKE_RESULTS.labels(result="refused", reason="connection-cap").inc()
            return Busy()
        self.open += 1
        return self._make(self._closed)

    def _closed(self) -> None:
        self.open -= 1


async def serve(
    config: IntakeConfig, acceptance: Acceptance, mailer: Mailer | None, reply_key: bytes | None
) -> asyncio.Server:
    """Listen on the configured address; the caller closes the returned server."""
    context = tls_context(config)
    handler = Handler(config, acceptance, mailer, reply_key)
    cap = ConnectionCap(
        config.max_connections, lambda closed: IntakeSMTP(handler, config, context, closed)
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(cap, config.host, config.port)
    log.info("intake.listening", host=config.host, port=config.port)
    return server
