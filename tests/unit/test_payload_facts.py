"""The edge takes header facts from the payload and refuses a caller who contradicts them."""

from datetime import UTC, datetime

import pytest
from lxml import etree

from gateway.core import schemas
from gateway.core.payload_facts import HeaderPayloadMismatch, merge, payload_facts
from gateway.core.resources import schemas_dir

pytestmark = pytest.mark.unit


def root_of(name: str) -> etree._Element:
    path = schemas_dir() / "examples" / "valid" / name
    return schemas.validate(path.read_bytes(), name)


def test_request_states_purpose_bases_rag_and_due_time() -> None:
    facts = payload_facts(root_of("information-request.xml"))
    assert facts.purpose == "child-safeguarding"
    assert facts.lawful_bases == ("uk-gdpr-9-2-g-dpa-sch1-18", "ca-2004-s11")
    assert facts.rag == "Amber"
    assert facts.deadline == datetime(2025, 3, 11, 9, 45, tzinfo=UTC)


def test_decision_states_none_of_them() -> None:
    facts = payload_facts(root_of("decision.xml"))
    assert (facts.purpose, facts.lawful_bases, facts.deadline) == (None, (), None)


def test_merge_prefers_the_payload_and_refuses_a_contradiction() -> None:
    assert merge("RAG", None, "Amber") == "Amber"
    assert merge("RAG", "Red", None) == "Red"
    assert merge("RAG", "Amber", "Amber") == "Amber"
    with pytest.raises(HeaderPayloadMismatch, match="RAG 'Red' differs from the payload's 'Amber'"):
        merge("RAG", "Red", "Amber")


REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
DUE = b"<ResponseDue>2025-03-11T09:45:00Z</ResponseDue>"


def test_a_due_time_the_schema_accepts_with_spaces_around_it_is_read() -> None:
    """Found by tests/fuzz (fuzz_xml_payload): the schema collapses the spaces, and
    fromisoformat raised a bare ValueError on them."""
    spaced = REQUEST.replace(DUE, b"<ResponseDue>\n  2025-03-11T09:45:00Z\n</ResponseDue>")
    facts = payload_facts(schemas.validate(spaced, "request.xml"))
    assert facts.deadline == datetime(2025, 3, 11, 9, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    "due",
    [
        "10000-03-11T09:45:00Z",  # five-digit year: xs:dateTime takes it, Python cannot
        "-2025-03-11T09:45:00Z",  # a year BC
        "2025-03-11T24:00:00Z",  # 24:00, end of day in XSD, not an hour in Python
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: OverflowError on comparing
        "9999-12-31T23:59:59-14:00",  # after 9999 in UTC
        "2025-03-11T09:45:00.1234567Z",  # beyond microseconds
    ],
)
def test_an_instant_no_reader_can_hold_is_a_schema_problem(due: str) -> None:
    """Found by tests/fuzz (fuzz_xml_payload): common.xsd Instant took these, and reading
    the due time (or comparing it) raised ValueError or OverflowError."""
    odd = REQUEST.replace(DUE, f"<ResponseDue>{due}</ResponseDue>".encode())
    with pytest.raises(schemas.SchemaViolation) as caught:
        schemas.validate(odd, "request.xml")
    assert caught.value.problems[0].element == "ResponseDue"
