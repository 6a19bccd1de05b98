"""The shipped examples are the schemas' contract: every valid one passes, every invalid one
fails with the message in its .expect file. Plus the behaviour callers rely on: all problems
reported at once, the root picked by element name, and redaction for logs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gateway.core import schemas
from gateway.core.errors import GatewayError
from gateway.core.resources import schemas_dir
from gateway.core.schemas import MESSAGE_TYPES, SchemaViolation

pytestmark = pytest.mark.unit

EXAMPLES = schemas_dir() / "examples"
VALID = sorted((EXAMPLES / "valid").glob("*.xml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.xml"))
REFERRAL = (EXAMPLES / "valid" / "referral.xml").read_bytes()


def referral_with(old: str, new: str) -> bytes:
    text = REFERRAL.decode()
    assert old in text
    return text.replace(old, new, 1).encode()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_validates(path: Path) -> None:
    root = schemas.validate(path.read_bytes(), path.name)
    assert schemas.message_type(root) in MESSAGE_TYPES


def test_there_is_a_valid_example_of_every_payload_type() -> None:
    found = {schemas.message_type(schemas.validate(p.read_bytes(), p.name)) for p in VALID}
    assert found == set(MESSAGE_TYPES) - {"EnvelopeHeader"}


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_fails_with_its_expected_message(path: Path) -> None:
    expected = path.with_suffix(".expect").read_text().strip()
    with pytest.raises(GatewayError) as caught:
        schemas.validate(path.read_bytes(), path.name)
    assert expected in str(caught.value)


def test_every_invalid_example_has_an_expectation_and_the_reverse() -> None:
    expects = {p.stem for p in (EXAMPLES / "invalid").glob("*.expect")}
    assert expects == {p.stem for p in INVALID}


def test_every_message_type_has_a_schema_file() -> None:
    for xsd in MESSAGE_TYPES.values():
        assert (schemas_dir() / xsd).is_file()


def test_all_problems_are_reported_with_source_and_line() -> None:
    data = referral_with(">9434765870<", ">9434765871<")
    data = data.replace(b'<Concern code="EMO"/>', b'<Concern code="99Z"/>')
    with pytest.raises(SchemaViolation) as caught:
        schemas.validate(data, "referral.xml")
    lines = str(caught.value).splitlines()
    assert lines == [
        "referral.xml:29: Identifier: NHS number 9434765871 fails its check digit",
        "referral.xml:63: Concern: attribute 'code': '99Z' is not a valid value of the union "
        "type 'ConcernCode'.",
    ]
    assert [p.line for p in caught.value.problems] == [29, 63]


def test_expected_root_refuses_another_message_type() -> None:
    with pytest.raises(SchemaViolation, match="expected a Decision, found a Referral"):
        schemas.validate(REFERRAL, "referral.xml", expected_root="Decision")


def test_expected_root_accepts_its_own_type() -> None:
    root = schemas.validate(REFERRAL, "referral.xml", expected_root="Referral")
    assert schemas.message_type(root) == "Referral"


def test_local_concern_codes_are_accepted_in_their_own_form_only() -> None:
    schemas.validate(referral_with('code="LOCAL-PREVENT"', 'code="LOCAL-CSE-ONLINE"'), "r.xml")
    with pytest.raises(SchemaViolation, match="ConcernCode"):
        schemas.validate(referral_with('code="LOCAL-PREVENT"', 'code="local-prevent"'), "r.xml")


def test_consent_given_needs_no_reason() -> None:
    text = REFERRAL.decode()
    start, end = text.index("<NotSought>"), text.index("</NotSought>") + len("</NotSought>")
    schemas.validate((text[:start] + "<Given><By>mother</By></Given>" + text[end:]).encode(), "r")


def test_redacted_problems_carry_no_values_from_the_document() -> None:
    data = referral_with(">9434765870<", ">9434765871<")
    data = data.replace(b"<DateOfBirth>2016-05-14<", b"<DateOfBirth>2016-13-14<")
    data = data.replace(b"<Phone>01632 960123<", b"<Phone>ask for Mr O'Brien<")
    with pytest.raises(SchemaViolation) as caught:
        schemas.validate(data, "referral.xml")
    full, redacted = str(caught.value), caught.value.redacted()
    for value in ("9434765871", "2016-13-14", "O'Brien"):
        assert value in full
        assert value not in redacted
    assert redacted.splitlines() == [
        "referral.xml:11: Phone: [facet 'pattern'] The value [redacted] is not accepted by the "
        "pattern '\\+?[0-9][0-9 ]{5,19}'.",
        "referral.xml:22: DateOfBirth: [redacted] is not a valid value of the atomic type "
        "'xs:date'.",
        "referral.xml:29: Identifier: NHS number [redacted] fails its check digit",
    ]
    assert len(redacted.splitlines()) == len(full.splitlines())


def test_envelope_header_is_checked_against_its_own_schema() -> None:
    header = b"""<EnvelopeHeader xmlns="urn:mash-gateway:v1" version="1">
  <MessageId>3f1c2a9e-8b4d-4e2f-9a61-0c7d5e8b2f14</MessageId>
  <CorrelationId>MASH-2025-000142</CorrelationId>
  <MessageType>Referral</MessageType>
  <SchemaVersion>1.0</SchemaVersion>
  <Sender agency="testbury-school" signingKeyId="testbury-school.sign.0123456789abcdef"/>
  <Recipients>
    <Recipient agency="testbury-csc" keyId="testbury-csc.encrypt.0123456789abcdef">AAAA</Recipient>
  </Recipients>
  <CreatedAt>2025-03-10T09:12:00Z</CreatedAt>
  <Purpose>child-safeguarding</Purpose>
  <LawfulBasis>uk-gdpr-6-1-e</LawfulBasis>
  <Assurance>edge-signed</Assurance>
  <Payload cipher="AES-256-GCM-SEGMENTED" segmentSize="65536">
    <CiphertextSha256>5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8</CiphertextSha256>
    <CiphertextLength>4096</CiphertextLength>
  </Payload>
</EnvelopeHeader>"""
    assert schemas.message_type(schemas.validate(header, "header")) == "EnvelopeHeader"
    bad = header.replace(b"uk-gdpr-6-1-e", b"consent")
    with pytest.raises(SchemaViolation, match=r"header:12: LawfulBasis: \[facet 'enumeration'\]"):
        schemas.validate(bad, "header")


def test_unknown_root_in_our_namespace_is_refused() -> None:
    with pytest.raises(SchemaViolation, match="not a MASH gateway message"):
        schemas.validate(b'<Gossip xmlns="urn:mash-gateway:v1"/>', "g.xml")


def test_unknown_identifier_scheme_is_reported_once() -> None:
    data = referral_with('scheme="upn"', 'scheme="ni-number"')
    with pytest.raises(SchemaViolation) as caught:
        schemas.validate(data, "r.xml")
    assert [p.element for p in caught.value.problems] == ["Identifier"]
    assert "attribute 'scheme'" in str(caught.value)


def test_checked_keeps_the_exact_bytes_the_root_and_the_type() -> None:
    document = schemas.checked(REFERRAL, "referral.xml")
    assert document.xml is REFERRAL
    assert document.message_type == "Referral"
    assert document.root.tag == "{urn:mash-gateway:v1}Referral"
    assert "Fictional" not in repr(document)  # a repr never carries the document


def test_checked_refuses_what_validate_refuses() -> None:
    with pytest.raises(SchemaViolation):
        schemas.checked(referral_with("<Purpose>", "<Purpose>x"), "bad.xml")
    with pytest.raises(SchemaViolation, match="expected a Decision"):
        schemas.checked(REFERRAL, "referral.xml", "Decision")


def test_only_checked_makes_a_checked_document() -> None:
    """Holding one must mean the bytes passed: no constructor call or replace() around it."""
    document = schemas.checked(REFERRAL, "referral.xml")
    with pytest.raises(TypeError, match="made only by"):
        schemas.CheckedDocument(b"<Referral/>", document.root, "Referral", object())
    with pytest.raises(ValueError, match="token"):
        replace(document, xml=b"<Referral/>")
