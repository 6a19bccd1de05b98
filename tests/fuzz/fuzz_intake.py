"""Fuzz the e-mail intake's parsing of a mail: MIME, PGP/MIME, DKIM, forms, triage, replay keys.

Feeds: one byte of choices, then the raw DATA of a mail, to the intake's own
``Acceptance.accept``, the step between the SMTP server's DATA and the
exchange: smuggling, sender policy, the From and Message-ID headers, DKIM
(dkimpy against a pinned ed25519 key), the PGP/MIME structure (mime.py),
the payload (content.py: an XML attachment, a form, or free text for triage)
and its schema check, addressing and the replay keys, and the header the
edge would seal it under. The choices byte picks
the sender (a `pgp` domain's officer, or a `tls` domain with DKIM) and whether
the harness DKIM-signs the mail with the pinned key first, so mutated mails
still reach the content. The mail's To header stands in for RCPT TO: it is
read as the SMTP server reads a recipient (sender_policy.recipient, reply
tokens included), and the mail goes to the hub when it is refused. gpg,
the replay memory and the exchange are stand-ins: decryption hands the
armoured part back as the plaintext, a detached signature verifies when it
is not empty, and submitting reads the payload's facts and builds the
envelope header as the edge does.
Oracle: ``accept`` returns an Accepted or a Refusal and raises nothing; any
exception would reach the SMTP server's catch-all and answer 451, a
temporary failure the sender's server would retry for days.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["gateway", "email", "dkim"]):
    import dkim
    import structlog
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.config.intake_config import parse_intake
    from gateway.core.envelope import HeaderFields, WrappedKey
    from gateway.core.envelope.header import header_element
    from gateway.core.errors import GatewayError
    from gateway.core.payload_facts import PayloadFacts, header_facts, payload_facts
    from gateway.core.resources import schemas_dir
    from gateway.intake import forms, mime, reply_tokens, sender_policy
    from gateway.intake.acceptance import Acceptance
    from gateway.intake.dkim_check import DkimVerifier
    from gateway.intake.pgp import Decrypted
    from gateway.intake.refusal import Refusal
    from gateway.intake.replay import ReplayKey, Seen
    from gateway.intake.trust import SignatureStatus, Verdict
    from gateway.services.edge import Submission

from fuzz_common import main

HOST = "intake.demo.example"
OFFICER = "pc.smith@police.demo.example"
NURSE = "nurse@health.demo.example"
FINGERPRINT = "A1" * 20
SELECTOR = "fuzz"
DKIM_KEY = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"mash-gateway fuzz dkim").digest()  # test-only, so seeds stay valid
)
DKIM_SEED = base64.b64encode(hashlib.sha256(b"mash-gateway fuzz dkim").digest())
DKIM_PUBLIC = base64.b64encode(DKIM_KEY.public_key().public_bytes_raw()).decode()


WRAP = (WrappedKey("hub", "hub.encrypt.0000000000000000", b"\0" * 48),)


def _fail(key: str, problem: str) -> GatewayError:
    return GatewayError(f"{key}: {problem}")


CONFIG = parse_intake(
    {
        "hostname": HOST,
        "mailboxes": ["hub"],
        "domains": [
            {
                "domain": "police.demo.example",
                "agency": "police",
                "policy": "pgp",
                "staff": [{"address": OFFICER, "fingerprint": FINGERPRINT}],
            },
            {
                "domain": "health.demo.example",
                "agency": "health",
                "policy": "tls",
                "authenticate": ["dkim"],
                "dkim_keys": [
                    {"selector": SELECTOR, "public_key": DKIM_PUBLIC, "key_type": "ed25519"}
                ],
            },
        ],
    },
    _fail,
    Path("/area"),
    frozenset({"hub", "police", "health"}),
)
assert CONFIG is not None


class Keyring:
    """gpg's stand-in: the armoured part is its own plaintext; a non-empty signature is good."""

    def decrypted(self, data: bytes) -> Decrypted:
        return Decrypted(bool(data.strip()), data)

    def verified(self, data: bytes, signature: bytes) -> Verdict:
        if not signature.strip():
            return Verdict(SignatureStatus.BAD, None)
        return Verdict(SignatureStatus.GOOD, FINGERPRINT)


class Replays:
    """The replay memory's stand-in: remembers nothing, so every input is judged alone."""

    async def claim(self, keys: tuple[ReplayKey, ...], now: datetime) -> Seen | None:
        return None

    def release(self, keys: tuple[ReplayKey, ...]) -> None:
        pass

    async def remember(self, keys: tuple[ReplayKey, ...], message_id: str, at: datetime) -> None:
        pass


async def submit(agency: str, submission: Submission, assurance: str) -> HeaderFields:
    """What the edge reads before sealing: the payload's facts against what was stated."""
    document = submission.payload
    assert not isinstance(document, bytes)
    stated = PayloadFacts(
        submission.purpose, submission.lawful_bases, submission.rag, submission.deadline
    )
    facts = header_facts(payload_facts(document.root), stated, submission.source)
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=submission.correlation_id or str(uuid.uuid4()),
        message_type=document.message_type,
        sender=agency,
        recipients=submission.recipients,
        created_at=datetime.now(UTC),
        purpose=facts.purpose,
        lawful_bases=facts.lawful_bases,
        assurance=assurance,
        in_reply_to=submission.in_reply_to,
        rag=facts.rag,
        deadline=facts.deadline,
    )
    header_element(fields, f"{agency}.sign.0000000000000000", WRAP, 65536)  # sealing's first step
    return fields


structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
ACCEPTANCE = Acceptance(CONFIG, Keyring(), submit, Replays(), DkimVerifier())  # type: ignore[arg-type]
LOOP = asyncio.new_event_loop()
HUB = (sender_policy.Recipient("hub"),)
REPLY_KEY = hashlib.sha256(b"mash-gateway fuzz reply tokens").digest()  # test-only
REQUEST_ID = str(uuid.UUID(int=1, version=4))


def dkim_signed(raw: bytes) -> bytes:
    """The mail with a DKIM-Signature by the pinned key, or as it was if dkimpy cannot sign it."""
    try:
        header = dkim.sign(
            raw,
            SELECTOR.encode(),
            b"health.demo.example",
            DKIM_SEED,
            signature_algorithm=b"ed25519-sha256",
        )
    except Exception:  # the harness's signing, not the intake: an unsignable mail goes unsigned
        return raw
    return bytes(header) + raw


def one_input(data: bytes) -> None:
    if not data:
        return
    choices, raw = data[0], data[1:]
    mail_from = OFFICER if choices & 1 else NURSE
    if choices & 2 and mail_from == NURSE:
        raw = dkim_signed(raw)
    LOOP.run_until_complete(ACCEPTANCE.accept(raw, mail_from, recipients(raw, mail_from)))


def recipients(raw: bytes, mail_from: str) -> tuple[sender_policy.Recipient, ...]:
    """The To header read as RCPT TO is; the hub when there is none or it is refused."""
    rule = sender_policy.sender_rule(mail_from, CONFIG)
    assert not isinstance(rule, Refusal)
    found = [
        sender_policy.recipient(to, CONFIG, rule, REPLY_KEY)
        for to in mime.entity(raw).header_values("To")
    ]
    chosen = tuple(r for r in found if isinstance(r, sender_policy.Recipient))
    return chosen or HUB


def _mail(sender: str, subject: str) -> EmailMessage:
    mail = EmailMessage(policy=SMTP)
    mail["From"] = sender
    mail["To"] = f"hub@{HOST}"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{subject.replace(' ', '-')}@fuzz.example>"
    mail["Date"] = "Tue, 03 Mar 2026 09:30:00 +0000"
    return mail


def seeds() -> dict[str, bytes]:
    referral = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
    with_xml = _mail(NURSE, "xml attachment")
    with_xml.set_content("A referral is attached.\n")
    with_xml.add_attachment(referral, "application", "xml", filename="referral.xml")
    free = _mail(NURSE, "free text")
    free.set_content("I am worried about a child at the school gate.\nPlease call me.\n")
    free.add_attachment(b"%PDF-1.4 notes", "application", "pdf", filename="notes.pdf")
    form = _mail(NURSE, "form referral")
    form.set_content(
        forms.fill_in(
            forms.template("Referral"),
            {
                "Referrer-Source": "3A",
                "Referrer-Name": "A Nurse",
                "Referrer-Role": "School nurse",
                "Subject-Given": "Sam",
                "Subject-Family": "Example",
                "Subject-Date-Of-Birth": "2015-04-01",
                "Concern": "NEG",
                "Consent": "not-sought",
                "Consent-Reason": "would place the child at risk",
                "Necessary-And-Proportionate": "to protect the child",
                "Purpose": "child-safeguarding",
                "Lawful-Basis": "uk-gdpr-6-1-e",
                "Rag": "Amber",
                "Narrative": "Seen with bruising.",
            },
        )
    )
    response = _mail(NURSE, "form response")
    token = reply_tokens.ReplyToken(REQUEST_ID, "hub", "health")
    response.replace_header("To", f"{reply_tokens.local_part(REPLY_KEY, token)}@{HOST}")
    response.set_content(
        forms.fill_in(
            forms.template("InformationResponse"),
            {
                "Request-Id": REQUEST_ID,
                "Responder-Name": "A Nurse",
                "Responder-Role": "Health visitor",
                "Purpose": "child-safeguarding",
                "Lawful-Basis": "uk-gdpr-6-1-e",
                "Consent": "given",
                "Necessary-And-Proportionate": "to protect the child",
                "Record": "GP | 2025-01-02 | attended with injury",
                "Release-Condition": "hub-only",
            },
        )
    )
    signed_inner = (
        b'Content-Type: multipart/signed; boundary="s1"; micalg=pgp-sha256;\r\n'
        b' protocol="application/pgp-signature"\r\n\r\n'
        b"--s1\r\n"
        b"Content-Type: application/xml\r\n\r\n"
        + referral.replace(b"\n", b"\r\n")
        + b"\r\n--s1\r\n"
        b"Content-Type: application/pgp-signature\r\n\r\n"
        b"-----BEGIN PGP SIGNATURE-----\r\nfuzz\r\n-----END PGP SIGNATURE-----\r\n"
        b"\r\n--s1--\r\n"
    )
    encrypted = (
        f"From: {OFFICER}\r\nTo: hub@{HOST}\r\nSubject: encrypted\r\n"
        "Message-ID: <encrypted@fuzz.example>\r\n".encode()
        + b'Content-Type: multipart/encrypted; boundary="e1";\r\n'
        b' protocol="application/pgp-encrypted"\r\n\r\n'
        b"--e1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        b"\r\n--e1\r\nContent-Type: application/octet-stream\r\n\r\n"
        + signed_inner
        + b"\r\n--e1--\r\n"
    )
    found = {
        "encrypted-signed": b"\x01" + encrypted,
        "signed-only": b"\x01"
        + f"From: {OFFICER}\r\nMessage-ID: <signed@fuzz.example>\r\n".encode()
        + signed_inner,
    }
    for name, mail in {
        "xml": with_xml,
        "free-text": free,
        "form-referral": form,
        "form-response": response,
    }.items():
        found[f"dkim-{name}"] = b"\x02" + mail.as_bytes()
    found["unsigned-xml"] = b"\x00" + with_xml.as_bytes()
    return found


if __name__ == "__main__":
    main(one_input, (), seeds)
