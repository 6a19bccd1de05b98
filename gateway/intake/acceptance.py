"""One mail from DATA to the exchange: every check in order, then the submission.

The shell that joins the pure checks (smuggling, policy, partner_auth, mime,
trust, replay, content) with the keyring, the DKIM verifier, the replay
memory and the exchange. The order matters: cheap checks on the raw bytes
first, the signatures (gpg, a process per call, and dkimpy, each in a
thread) only for a mail that passed them, the replay memory for an
authenticated mail only (so no stranger can fill it), and the exchange
last, so a refused mail never reaches it. ``accept`` returns only after the
broker confirmed the message and the replay memory kept it, so the 250 the
sender gets means the message is on the exchange and a copy will be refused.
(Should the memory fail to write, the mail is accepted all the same and the
failure logged: a 4xx would make the sender's MTA send a copy for certain.)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ParamSpec, TypeVar

import structlog

from gateway.config.intake_config import Authentication, DomainRule, IntakeConfig, Policy
from gateway.core.attachments import AttachmentRefused
from gateway.core.envelope import HeaderFields
from gateway.core.payload_facts import HeaderPayloadMismatch
from gateway.infra.clock import utc_now
from gateway.intake import content, mime, partner_auth, replay, sender_policy, trust
from gateway.intake.dkim_check import DkimVerifier
from gateway.intake.pgp import Keyring
from gateway.intake.refusal import Refusal
from gateway.intake.replay_memory import ReplayMemory
from gateway.intake.smuggling import smuggling_refusal
from gateway.intake.triage import MailFile
from gateway.intake.trust import Verdict
from gateway.services import metrics
from gateway.services.edge import PolicyRefusal, Submission
from gateway.services.transfer_sender import AttachmentFile

log = structlog.get_logger("gateway.intake")

REMEMBERED_SENDERS = 100_000
PGP_VERIFIED = "pgp-verified"
TLS_ONLY = "tls-only"

# (sending agency, what to submit, assurance) -> the header the edge published
Submitter = Callable[[str, Submission, str], Awaitable[HeaderFields]]


_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Authenticated:
    content: bytes  # the MIME entity that carries the payload
    assurance: str
    signer: str | None = None  # the pinned fingerprint that signed it
    covered: tuple[str, ...] = ()  # SHA-256 of what each signature covers (replay keys)


@dataclass(frozen=True)
class Accepted:
    fields: HeaderFields
    rule: DomainRule
    from_address: str
    assurance: str
    signer: str | None  # the pinned fingerprint: acknowledgements are encrypted to it


class Acceptance:
    def __init__(
        self,
        config: IntakeConfig,
        keyring: Keyring,
        submit: Submitter,
        replays: ReplayMemory,
        dkim: DkimVerifier,
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.submit = submit
        self.replays = replays
        self.dkim = dkim
        # message id -> the mail's sender, so a later non-delivery can be mailed back.
        # In memory and bounded: after a restart a notice goes to the agency's contacts.
        self.senders: OrderedDict[str, Accepted] = OrderedDict()
        # Parsing a mail (MIME, the form or document, the schema) is CPU work of up to
        # seconds for a large one: done off the event loop, so other SMTP sessions go on.
        # One thread: lxml parsers and schemas are not shared between threads at once.
        self._parsing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-parse")

    async def _parsed(self, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._parsing, functools.partial(work, *args, **kwargs))

    async def accept(
        self,
        raw: bytes,
        mail_from: str,
        recipients: tuple[sender_policy.Recipient, ...],
        client_certificate: str | None = None,
    ) -> Accepted | Refusal:
        """``client_certificate``: the SHA-256 of the session's TLS client certificate."""
        outcome = await self._accept(raw, mail_from, recipients, client_certificate)
        if isinstance(outcome, Refusal):
            refused(outcome)
        else:
            self.senders[outcome.fields.message_id] = outcome
            while len(self.senders) > REMEMBERED_SENDERS:
                self.senders.popitem(last=False)
            metrics.INTAKE_RESULTS.labels(result="accepted", reason=outcome.assurance).inc()
            log.info(
                "intake.accepted",
                message_id=outcome.fields.message_id,
                message_type=outcome.fields.message_type,
                sender=outcome.fields.sender,
                assurance=outcome.assurance,
            )
        return outcome

    async def _accept(
        self,
        raw: bytes,
        mail_from: str,
        recipients: tuple[sender_policy.Recipient, ...],
        client_certificate: str | None,
    ) -> Accepted | Refusal:
        smuggled = smuggling_refusal(raw)
        if smuggled is not None:
            return smuggled
        rule = sender_policy.sender_rule(mail_from, self.config)
        if isinstance(rule, Refusal):
            return rule
        uncertified = partner_auth.certificate_refusal(rule, client_certificate)
        if uncertified is not None:
            return uncertified
        message = await self._parsed(mime.entity, raw)
        from_address = sender_policy.header_from(message.header_values("From"), rule)
        if isinstance(from_address, Refusal):
            return from_address
        message_id = replay.message_id(message.header_values("Message-ID"))
        if isinstance(message_id, Refusal):
            return message_id
        vouched = await self.vouch(raw, rule)
        if isinstance(vouched, Refusal):
            return vouched
        with metrics.timed("gpg_decrypt_verify"):
            authenticated = await self.authenticate(message, rule, from_address)
        if isinstance(authenticated, Refusal):
            return authenticated
        keys = replay.keys(rule.domain, message_id, (*vouched, *authenticated.covered))
        seen = await self.replays.claim(keys, utc_now())
        if seen is not None:
            return replay.replayed(seen)
        try:
            outcome = await self._submit(authenticated, rule, from_address, recipients)
            if isinstance(outcome, Accepted):
                await self._remember(keys, outcome.fields.message_id)
            return outcome
        finally:
            self.replays.release(keys)

    async def _remember(self, keys: tuple[replay.ReplayKey, ...], message_id: str) -> None:
        """Keep the accepted mail's keys. The message is already on the exchange: if the
        memory cannot be written, a 4xx would make the sender's MTA send a second copy for
        certain, so the mail is still accepted and the failure logged and counted."""
        try:
            await self.replays.remember(keys, message_id, utc_now())
        except Exception:
            log.exception("intake.replay_memory_failed", message_id=message_id)
            metrics.INTAKE_RESULTS.labels(result="accepted", reason="replay-unremembered").inc()

    async def vouch(self, raw: bytes, rule: DomainRule) -> tuple[str, ...] | Refusal:
        """A `tls` domain's DKIM check, when its rule asks for one: the digest of what the
        accepted signature covers (none for a rule without DKIM)."""
        if Authentication.DKIM not in rule.authenticate:
            return ()
        verdict = partner_auth.dkim_verdict(rule, await self.dkim.signatures(raw, rule))
        if isinstance(verdict, Refusal):
            return verdict
        old = replay.too_old(verdict.signed_at, utc_now(), self.config.replay_window)
        if old is not None:
            return old
        return (verdict.covered,) if verdict.covered else ()

    async def _submit(
        self,
        authenticated: Authenticated,
        rule: DomainRule,
        from_address: str,
        recipients: tuple[sender_policy.Recipient, ...],
    ) -> Accepted | Refusal:
        payload = await self._parsed(
            content.payload_of, authenticated.content, utc_now(), rule.agency, from_address
        )
        if isinstance(payload, Refusal):
            return payload
        addressed = sender_policy.addressing(recipients, payload.message_type, payload.in_reply_to)
        if isinstance(addressed, Refusal):
            return addressed
        agencies, in_reply_to = addressed
        submission = Submission(
            payload=payload.document,  # checked above: the edge does not check it again
            recipients=agencies,
            correlation_id=payload.correlation_id,
            in_reply_to=in_reply_to,
            source=f"mail from {rule.domain}",
        )
        if not payload.files:
            return await self._submitted(submission, authenticated, rule, from_address)
        # The spool folder is made, written and removed in worker threads: directory
        # operations wait on the file system's journal, a millisecond or more on a busy disk.
        spool = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="mash-intake-"))
        try:
            files = await asyncio.to_thread(spooled, payload.files, spool)
            with_files = replace(submission, attachments=files)
            return await self._submitted(with_files, authenticated, rule, from_address)
        finally:
            await asyncio.to_thread(shutil.rmtree, spool, ignore_errors=True)

    async def _submitted(
        self,
        submission: Submission,
        authenticated: Authenticated,
        rule: DomainRule,
        from_address: str,
    ) -> Accepted | Refusal:
        try:
            fields = await self.submit(rule.agency, submission, authenticated.assurance)
        except HeaderPayloadMismatch as exc:  # raised before anything is sealed or published
            return Refusal(550, "5.6.0", f"The document cannot be sent: {exc}", "payload-facts")
        except PolicyRefusal as exc:  # likewise: a UPN outside an education flow
            return Refusal(550, "5.7.1", f"The document may not be sent: {exc}", "policy")
        except AttachmentRefused as exc:  # a [limits] bound, a manifest that differs
            status = (552, "5.3.4") if exc.check == "limit" else (550, "5.6.0")
            return Refusal(*status, f"The attachments cannot be sent: {exc}", "attachments")
        return Accepted(fields, rule, from_address, authenticated.assurance, authenticated.signer)

    async def authenticate(
        self, message: mime.Entity, rule: DomainRule, from_address: str
    ) -> Authenticated | Refusal:
        """Decrypt and verify PGP/MIME; a `pgp` domain must sign with a pinned key and encrypt."""
        try:
            opened = await asyncio.to_thread(open_pgp_mime, self.keyring, message)
        except mime.MimeError as exc:
            return Refusal(550, "5.6.0", f"Malformed PGP/MIME message: {exc}", "mime")
        if not opened.decrypted:
            return Refusal(
                550,
                "5.7.5",
                "The message could not be decrypted with this intake's key; "
                "encrypt to the key the hub published",
                "decrypt",
            )
        if opened.verdict is not None:
            staff = trust.signer(opened.verdict, rule, from_address)
            if isinstance(staff, Refusal):
                return staff
            old = replay.too_old(opened.verdict.signed_at, utc_now(), self.config.replay_window)
            if old is not None:
                return old
            if rule.policy is Policy.PGP and not opened.encrypted:
                return Refusal(
                    550,
                    "5.7.1",
                    f"Mail from {rule.domain} must be encrypted to this intake's key "
                    "(PGP/MIME, RFC 3156)",
                    "not-encrypted",
                )
            covered = hashlib.sha256(opened.signed).hexdigest()
            return Authenticated(opened.signed, PGP_VERIFIED, staff.fingerprint, (covered,))
        if rule.policy is Policy.PGP:
            return Refusal(
                550,
                "5.7.1",
                f"Mail from {rule.domain} must be signed (PGP/MIME, RFC 3156) "
                "with a key registered to its sender",
                "unsigned",
            )
        return Authenticated(opened.inner.raw, TLS_ONLY)


@dataclass(frozen=True)
class Opened:
    """A mail's PGP/MIME layers as gpg found them; the verdict is not yet judged."""

    encrypted: bool
    decrypted: bool  # False: encrypted, but not to a key this intake holds
    inner: mime.Entity  # the decrypted entity, or the mail itself when it was not encrypted
    verdict: Verdict | None = None  # the detached signature's, when the inner entity is signed
    signed: bytes = b""  # the exact bytes that signature covers


def open_pgp_mime(keyring: Keyring, message: mime.Entity) -> Opened:
    """Blocking: decrypt (RFC 3156 section 4), read the inner entity and verify its detached
    signature (section 5), all in one worker thread. One trip off the event loop instead of
    one per gpg call and parse: each trip is a thread hand-off and a wake-up of the loop.
    Raises mime.MimeError for a structure that is not what it claims to be."""
    encrypted = message.content_type == mime.ENCRYPTED
    inner = message
    if encrypted:
        decrypted = keyring.decrypted(mime.encrypted_payload(message))
        if not decrypted.ok:
            return Opened(encrypted=True, decrypted=False, inner=message)
        inner = mime.entity(decrypted.plaintext)
    if inner.content_type != mime.SIGNED:
        return Opened(encrypted, True, inner)
    parts = mime.signed_parts(inner)
    verdict = keyring.verified(parts.signed, parts.signature)
    return Opened(encrypted, True, inner, verdict, parts.signed)


def spooled(files: tuple[MailFile, ...], folder: Path) -> tuple[AttachmentFile, ...]:
    """The mail's files written under ``folder`` (a private temporary folder, 0700, removed
    once the edge has sealed them), for the edge to attach under their safe names."""
    attached = []
    for index, file in enumerate(files):
        path = folder / f"{index:03d}"
        path.write_bytes(file.data)
        attached.append(AttachmentFile(path, file.media_type, name=file.filename))
    return tuple(attached)


def refused(refusal: Refusal) -> None:
    """Count and log a refusal: the check name only, never an address or content."""
    metrics.INTAKE_RESULTS.labels(result="refused", reason=refusal.check).inc()
    log.warning("intake.refused", check=refusal.check, status=refusal.status)
