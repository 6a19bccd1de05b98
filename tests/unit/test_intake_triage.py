"""A free-text mail becomes a schema-valid Referral flagged for manual triage."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP

import pytest
from lxml import etree

from gateway.core import schemas
from gateway.core.attachments import check_file_name, manifest
from gateway.core.resources import schemas_dir
from gateway.intake.content import Payload, payload_of
from gateway.intake.refusal import Refusal
from gateway.intake.triage import MAX_TEXT, MailFile, text_of

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
NS = {"m": "urn:mash-gateway:v1"}
TEXT = "Jamie came to clinic with a bruise nobody would explain.\nPlease call me."
PDF = b"%PDF-1.4 body map\x00\x01"


def free_mail(
    body: str | None = TEXT,
    files: tuple[tuple[bytes, str, str, str | None], ...] = (),
    from_address: str | None = "nurse@health.demo.example",
    html: str | None = None,
) -> bytes:
    message = EmailMessage(policy=SMTP)
    if from_address is not None:
        message["From"] = from_address
    message["Subject"] = "Worried about a child"
    if body is not None:
        message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for data, maintype, subtype, filename in files:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def triaged_payload(mail: bytes, sender: str | None = None) -> Payload:
    payload = payload_of(mail, AT, "health", sender)
    assert isinstance(payload, Payload), payload
    assert (payload.message_type, payload.carried_as) == ("Referral", "free-text")
    return payload


def triaged(mail: bytes, sender: str | None = None) -> etree._Element:
    return schemas.validate(triaged_payload(mail, sender).xml, "triage", "Referral")


def refusal(mail: bytes, sender: str | None = None) -> Refusal:
    outcome = payload_of(mail, AT, "health", sender)
    assert isinstance(outcome, Refusal), outcome
    return outcome


def test_free_text_with_an_attachment_becomes_a_triage_referral_with_the_file_beside_it() -> None:
    mail = free_mail(files=((PDF, "application", "pdf", "body-map.pdf"),))
    assert triaged_payload(mail).files == (MailFile("body-map.pdf", "application/pdf", PDF),)
    root = triaged(mail)
    assert root.findtext("m:ContactReceivedAt", namespaces=NS) == "2026-11-23T09:30:00Z"
    assert root.findtext("m:ManualTriage/m:From", namespaces=NS) == "nurse@health.demo.example"
    assert root.findtext("m:ManualTriage/m:MailSubject", namespaces=NS) == "Worried about a child"
    assert root.findtext("m:ManualTriage/m:Text", namespaces=NS) == TEXT
    # The bytes never sit in the XML: the edge names the file in Attachments when it sends.
    assert PDF not in triaged_payload(mail).xml
    assert root.find("m:Attachments", namespaces=NS) is None
    # It claims nothing the sender did not say, and states the header's purpose and bases.
    assert root.find("m:Subjects", namespaces=NS) is None
    assert root.find("m:Consent", namespaces=NS) is None
    assert root.findtext("m:Purpose", namespaces=NS) == "child-safeguarding"
    assert [e.text for e in root.findall("m:LawfulBasis", namespaces=NS)] == [
        "uk-gdpr-6-1-e",
        "uk-gdpr-9-2-g-dpa-sch1-18",
    ]


def test_free_text_alone_is_triaged_and_the_html_rendering_is_not_a_file() -> None:
    assert triaged_payload(free_mail(html="<p>Jamie came to clinic</p>")).files == ()
    with_html_file = free_mail(files=((b"<p>notes</p>", "text", "html", "notes.html"),))
    [file] = triaged_payload(with_html_file).files
    assert file.media_type == "text/html"


def test_the_checked_from_address_is_recorded_even_when_the_signed_part_has_none() -> None:
    root = triaged(free_mail(from_address=None), sender="pc.smith@police.demo.example")
    assert root.findtext("m:ManualTriage/m:From", namespaces=NS) == "pc.smith@police.demo.example"
    missing = refusal(free_mail(from_address=None))
    assert (missing.check, missing.status) == ("free-text", "5.6.0")
    assert "From address" in missing.reply


def test_file_names_become_bare_names() -> None:
    files = (
        (b"a", "application", "octet-stream", "../../etc/passwd"),
        (b"b", "application", "octet-stream", ".."),
        (b"c", "application", "octet-stream", None),
        (b"d", "application", "octet-stream", "C:\\Users\\nurse\\notes\x07.doc"),
        (b"e", "application", "octet-stream", "Notes.DOC"),
        (b"f", "application", "octet-stream", "scan..of..arm.png"),
        (b"g", "application", "octet-stream", "=?utf-8?q?r=C3=A9sum=C3=A9=2Epdf?="),
        (b"h", "application", "octet-stream", "x" * 300 + ".pdf"),
    )
    names = [file.filename for file in triaged_payload(free_mail(files=files)).files]
    assert names[:7] == [
        "passwd",
        "attachment-2",
        "attachment-3",
        "notes.doc",
        "Notes-2.DOC",  # unique, case-blind
        "scan.of.arm.png",
        "r\u00e9sum\u00e9.pdf",
    ]
    assert len(names[7].encode()) == 255 and names[7].endswith(".pdf")
    for name in names:
        assert check_file_name(name) == name


def test_characters_xml_cannot_hold_are_replaced_not_refused() -> None:
    root = triaged(free_mail(body="Line one\x0b and \x1b two"))
    assert root.findtext("m:ManualTriage/m:Text", namespaces=NS) == "Line one\ufffd and \ufffd two"


def test_a_mail_with_blank_or_overlong_text_is_refused_without_quoting_it() -> None:
    blank = refusal(free_mail(body="   \n\n", files=((PDF, "application", "pdf", "x.pdf"),)))
    assert blank.check == "free-text" and "no text" in blank.reply
    long = refusal(free_mail(body="Jamie " * (MAX_TEXT // 5)))
    assert long.check == "free-text" and "attachment" in long.reply
    assert "Jamie" not in long.reply


def test_a_mail_without_a_text_body_carries_no_payload() -> None:
    message = EmailMessage(policy=SMTP)
    message.set_content(PDF, maintype="application", subtype="pdf", filename="x.pdf")
    assert refusal(message.as_bytes()).check == "no-payload"


def test_xml_and_forms_still_win_over_triage() -> None:
    referral = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
    attached = payload_of(free_mail(files=((referral, "application", "xml", "r.xml"),)), AT, "x")
    assert isinstance(attached, Payload) and attached.carried_as == "xml-attachment"
    form = refusal(free_mail(body="Form: Referral\nRag: Purple\n"))
    assert form.check == "form-field"


def test_the_shipped_example_names_its_file_after_the_handling_facts() -> None:
    path = schemas_dir() / "examples" / "valid" / "referral-manual-triage.xml"
    root = schemas.validate(path.read_bytes(), path.name, "Referral")
    assert [f.file_name for f in manifest(root)] == ["body-map.txt"]


def test_a_document_or_form_mail_carries_its_other_parts_as_files() -> None:
    referral = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
    mail = free_mail(
        body="Referral attached.",
        files=((referral, "application", "xml", "r.xml"), (PDF, "application", "pdf", "a.pdf")),
    )
    payload = payload_of(mail, AT, "health")
    assert isinstance(payload, Payload) and payload.carried_as == "xml-attachment"
    assert payload.files == (MailFile("a.pdf", "application/pdf", PDF),)


def test_a_document_that_carries_no_attachments_refuses_files() -> None:
    receipt = (schemas_dir() / "examples" / "valid" / "delivery-receipt.xml").read_bytes()
    mail = free_mail(
        files=((receipt, "application", "xml", "r.xml"), (PDF, "application", "pdf", "a.pdf"))
    )
    refused = refusal(mail)
    assert (refused.check, refused.status) == ("attachments", "5.6.0")
    assert "A DeliveryReceipt carries no attachments" in refused.reply


def test_a_mail_with_over_a_hundred_files_is_refused() -> None:
    files = tuple((b"x", "application", "octet-stream", f"f{i}.bin") for i in range(101))
    refused = refusal(free_mail(files=files))
    assert (refused.check, refused.status) == ("attachments", "5.6.0")


@pytest.mark.parametrize("charset", ["utf\x00-8", "no-such-charset", "rot13"])
def test_a_text_part_with_a_charset_no_codec_has_is_read_as_utf8(charset: str) -> None:
    """Found by tests/fuzz (fuzz_intake): a charset name holding NUL made the codec lookup
    raise ValueError, which reached the SMTP server as a 451."""
    part = Message()
    part["Content-Type"] = f'text/plain; charset="{charset}"'
    part.set_payload("caf\u00e9".encode().decode("latin-1"))
    assert text_of(part) == "caf\u00e9"
