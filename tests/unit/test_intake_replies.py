"""What the intake mails: non-delivery facts, reminders, and requests with the form pre-filled."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default

import pytest

from gateway.core import notices
from gateway.core.deadlines import EscalationContact
from gateway.intake.bounces import Bounce, bounce_of
from gateway.intake.forms import fill
from gateway.intake.reminders import reminder_mail
from gateway.intake.replies import (
    Heading,
    MailedFile,
    plain,
    request_body,
    text_entity,
    text_with_xml,
)

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
FAILED = "6f1c2b1e-8f0a-4c47-9d55-6c1f0b7d2a10"


def test_a_non_delivery_or_negative_receipt_is_a_bounce_and_nothing_else_is() -> None:
    payload = notices.non_delivery(FAILED, "education", "policy", "no agreement", AT)
    assert bounce_of("NonDelivery", payload, None, None, None) == Bounce(
        FAILED, "policy", "no agreement"
    )
    negative = bounce_of("DeliveryReceipt", b"", FAILED, "negative", "payload-schema")
    assert negative is not None and (negative.message_id, negative.check) == (
        FAILED,
        "payload-schema",
    )
    assert bounce_of("DeliveryReceipt", b"", FAILED, "positive", None) is None
    assert bounce_of("Referral", b"<x/>", None, None, None) is None


def test_a_reminder_names_the_overdue_message_and_whom_to_call() -> None:
    contact = EscalationContact("Team manager", "hub", phone="01632 960999", name="M Lee")
    payload = notices.escalation(
        FAILED, "CASE-1", "response", 2, "Red", AT, AT, "probation", [contact]
    )
    subject, body = reminder_mail(payload, "probation")
    assert subject == f"Escalation: response deadline for {FAILED}"
    assert "Case: CASE-1" in body and "RAG: Red" in body
    assert "- M Lee, Team manager, hub, 01632 960999" in body


def test_a_mailed_request_carries_a_form_that_answers_it_once_filled_in() -> None:
    body = request_body(FAILED, "CASE-1", "hub", AT)
    form = body[body.index("Form: InformationResponse") :]
    assert f"Request-Id: {FAILED}\n" in form and "Case-Id: CASE-1\n" in form
    answers = {
        "Responder-Name:": "Jo Bloggs",
        "Responder-Role:": "Officer",
        "Purpose:": "child-safeguarding",
        "Lawful-Basis:": "uk-gdpr-6-1-e",
        "Consent:": "given",
        "Necessary-And-Proportionate:": "Only what was asked.",
        "Systems-Searched:": "nDelius",
        "Release-Condition:": "hub-only",
    }
    filled = "\n".join(
        f"{line.split()[0]} {answers[line.split()[0]]}"
        if line.split() and line.split()[0] in answers
        else line
        for line in form.splitlines()
    )
    answer = fill(filled, AT, "probation")
    assert (answer.in_reply_to, answer.correlation_id) == (FAILED, "CASE-1")


def test_mails_are_crlf_and_say_they_are_automatic() -> None:
    heading = Heading("mash-intake@i.example", "a@b.example", "Accepted", AT, "i.example")
    data = plain(heading, text_entity("hello\n"))
    assert b"Auto-Submitted: auto-replied\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_a_request_s_files_follow_its_xml_under_their_names_and_media_types() -> None:
    files = (
        MailedFile("lettre d'hôpital.pdf", "application/pdf", b"%PDF-1.7\x00\xff"),
        MailedFile("notes.txt", "text/plain", b"line one\r\n"),
    )
    entity = text_with_xml("See attached.", b"<InformationRequest/>", "request.xml", files)
    message = BytesParser(policy=default).parsebytes(entity)
    assert isinstance(message, EmailMessage)
    found = [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    ]
    assert found == [
        ("request.xml", "application/xml", b"<InformationRequest/>"),
        ("lettre d'hôpital.pdf", "application/pdf", b"%PDF-1.7\x00\xff"),
        ("notes.txt", "text/plain", b"line one\r\n"),
    ]
