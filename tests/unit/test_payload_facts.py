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
