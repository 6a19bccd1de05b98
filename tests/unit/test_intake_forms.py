"""Plain-text forms become canonical, schema-valid XML; a bad field is refused by name."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from gateway.core import schemas
from gateway.core.resources import schemas_dir
from gateway.intake.content import Payload, payload_of
from gateway.intake.forms import FormError, fill, fill_in, is_form, template
from gateway.intake.refusal import Refusal

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
REQUEST_ID = "6f1c2b1e-8f0a-4c47-9d55-6c1f0b7d2a10"

REFERRAL_FORM = """Form: Referral
Referrer-Source: 6
Referrer-Name: PC Sam Smith
Referrer-Role: Police constable
Referrer-Phone: 01632 960000
Subject-Given: Jamie
Subject-Family: Example
Subject-Date-Of-Birth: 2016-05-14
Subject-NHS-Number: 9434765870
Concern: 3A
Concern: EMO
Consent: not-sought
Consent-Reason: Telling the family first may put the child at greater risk.
Necessary-And-Proportionate: Only what the hub needs to assess risk.
Purpose: child-safeguarding
Lawful-Basis: uk-gdpr-6-1-e
Lawful-Basis: uk-gdpr-9-2-g-dpa-sch1-18
Rag: Amber
Narrative: Officers attended a domestic incident.
  The child was present and hid upstairs.
"""

RESPONSE_FORM = f"""Form: InformationResponse
Request-Id: {REQUEST_ID}
Responder-Name: Chris Doe
Responder-Role: Named nurse
Purpose: child-safeguarding
Lawful-Basis: uk-gdpr-9-2-h-dpa-sch1-2
Consent: given
Necessary-And-Proportionate: Only the contacts relevant to the questions asked.
Record: Emergency department | 2025-01-22 | Attended with a wrist sprain.
Record: Maternity system | | Two missed antenatal appointments.
Release-Condition: no-onward-disclosure-without-originator-consent
Caveat: Discuss with the named nurse before use.
"""


def test_a_referral_form_becomes_a_valid_referral() -> None:
    filled = fill(REFERRAL_FORM, AT, "police")
    root = schemas.validate(filled.xml, "form", "Referral")
    ns = {"m": "urn:mash-gateway:v1"}
    assert root.findtext("m:Narrative", namespaces=ns) == (
        "Officers attended a domestic incident.\nThe child was present and hid upstairs."
    )
    assert root.findtext("m:Referrer/m:Agency", namespaces=ns) == "police"
    assert root.findtext("m:ContactReceivedAt", namespaces=ns) == "2026-11-23T09:30:00Z"
    assert [c.get("code") for c in root.findall("m:Concerns/m:Concern", ns)] == ["3A", "EMO"]


def test_a_response_form_becomes_a_valid_response_correlated_to_its_request() -> None:
    filled = fill(RESPONSE_FORM, AT, "health")
    schemas.validate(filled.xml, "form", "InformationResponse")
    assert filled.in_reply_to == REQUEST_ID
    assert filled.message_type == "InformationResponse"


def test_the_readme_templates_list_every_field() -> None:
    assert "Subject-Date-Of-Birth:" in template("Referral") and is_form(template("Referral"))
    assert "Request-Id:" in template("InformationResponse")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            ("Subject-Date-Of-Birth: 2016-05-14", "Subject-Date-Of-Birth: 14/05/2016"),
            "Subject-Date-Of-Birth",
        ),
        (
            ("Subject-NHS-Number: 9434765870", "Subject-NHS-Number: 9434765871"),
            "Subject-NHS-Number",
        ),
        (("Lawful-Basis: uk-gdpr-6-1-e", "Lawful-Basis: because"), "Lawful-Basis"),
        (("Purpose: child-safeguarding", "Purpose: curiosity"), "Purpose"),
        (("Concern: 3A", "Concern: ZZZ"), "Concern"),
        (("Rag: Amber", "Rag: Purple"), "Rag"),
        (
            ("Consent-Reason: Telling the family first may put the child at greater risk.\n", ""),
            "Consent-Reason",
        ),
        (("Referrer-Name: PC Sam Smith\n", ""), "Referrer-Name"),
        (("Rag: Amber", "Rag: Amber\nRag: Red"), "Rag"),
        (("Rag: Amber", "Shoe-Size: 9"), "Shoe-Size"),
        (("Referrer-Source: 6", "Referrer-Source: police"), "Referrer-Source"),
        (("Referrer-Phone: 01632 960000", "Referrer-Phone: ring me"), "Referrer-Phone"),
    ],
)
def test_an_invalid_field_is_named(change: tuple[str, str], field: str) -> None:
    with pytest.raises(FormError) as raised:
        fill(REFERRAL_FORM.replace(*change), AT, "police")
    assert raised.value.field == field


def test_a_response_needs_records_or_systems_searched_and_a_request_id() -> None:
    no_records = "\n".join(
        line for line in RESPONSE_FORM.splitlines() if not line.startswith("Record")
    )
    with pytest.raises(FormError, match="Record"):
        fill(no_records, AT, "health")
    with pytest.raises(FormError, match="Request-Id"):
        fill(RESPONSE_FORM.replace(REQUEST_ID, "REQ-1"), AT, "health")
    with pytest.raises(FormError, match="Case-Id"):
        fill(RESPONSE_FORM + "Case-Id: case 12 <b>\n", AT, "health")
    assert (
        fill(RESPONSE_FORM + "Case-Id: MASH-DEMO-1\n", AT, "health").correlation_id == "MASH-DEMO-1"
    )


def _mail(body: str, xml: bytes | None = None) -> bytes:
    message = EmailMessage(policy=SMTP)
    message.set_content(body)
    if xml is not None:
        message.add_attachment(xml, maintype="application", subtype="xml", filename="m.xml")
    return message.as_bytes()


def test_what_a_mail_carries() -> None:
    referral = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
    attached = payload_of(_mail("see attached", referral), AT, "police")
    assert isinstance(attached, Payload) and attached.xml == referral
    assert attached.carried_as == "xml-attachment"
    form = payload_of(_mail(RESPONSE_FORM), AT, "health")
    assert isinstance(form, Payload) and form.in_reply_to == REQUEST_ID
    bad = payload_of(_mail(REFERRAL_FORM.replace("Rag: Amber", "Rag: Purple")), AT, "police")
    assert isinstance(bad, Refusal) and bad.reply.startswith("550 5.6.0 Form field Rag:")
    free = payload_of(_mail("Please call me about a child."), AT, "police", "pc@police.example")
    assert isinstance(free, Payload) and free.carried_as == "free-text"  # test_intake_triage.py
    renamed = referral.replace(b"Narrative>", b"Narative>")
    invalid = payload_of(_mail("x", renamed), AT, "police")
    assert isinstance(invalid, Refusal) and invalid.check == "payload-schema"


def test_the_template_itself_is_refused_naming_the_first_required_field() -> None:
    with pytest.raises(FormError) as raised:
        fill(template("Referral"), AT, "police")
    assert raised.value.field == "Referrer-Source" and "required" in raised.value.problem
    hinted = REFERRAL_FORM.replace("Rag: Amber", "Rag:    # Red, Amber or Green (optional)")
    schemas.validate(fill(hinted, AT, "police").xml, "form", "Referral")


def test_filling_in_the_blank_template_gives_the_same_document_as_writing_the_form() -> None:
    answers = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in RESPONSE_FORM.splitlines()[1:]
        if not line.startswith("Record:")
    }
    filled_in = fill_in(template("InformationResponse"), answers)
    assert filled_in.splitlines()[0] == "Form: InformationResponse"
    assert f"Request-Id: {REQUEST_ID}" in filled_in.splitlines()
    assert "Caveat: Discuss with the named nurse before use." in filled_in.splitlines()
    # An unanswered field keeps its hint, and a hint counts as empty.
    assert any(line.startswith("Record:    # ") for line in filled_in.splitlines())
    with pytest.raises(FormError) as raised:  # neither records nor systems searched
        fill(filled_in, AT, "health")
    assert raised.value.field in {"Record", "Systems-Searched"}
    answers["Systems-Searched"] = "Electronic patient record"
    document = fill(fill_in(template("InformationResponse"), answers), AT, "health")
    schemas.validate(document.xml, "form", "InformationResponse")
    assert document.in_reply_to == REQUEST_ID


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x7f\x08", "\ud800"])
def test_a_value_holding_a_character_xml_cannot_carry_is_refused_naming_the_field(
    character: str,
) -> None:
    """Found by tests/fuzz (fuzz_intake): lxml refused it with a bare ValueError, which the
    SMTP server turned into a 451 the sender's server would retry for days."""
    text = REFERRAL_FORM.replace("PC Sam Smith", f"PC Sam{character}Smith")
    with pytest.raises(FormError) as caught:
        fill(text, AT, "police")
    assert caught.value.field == "Referrer-Name"
    assert "line 3" in caught.value.problem
