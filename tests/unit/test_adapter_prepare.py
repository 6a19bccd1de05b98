"""Before sealing: mapped documents are schema-checked; a UPN travels only in education flows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from adapters.mapping import Canonical
from adapters.prepare import Refused, prepare
from adapters.profile import BUILTIN, load_profile
from gateway.config.area_config import parse_config
from gateway.core.resources import schemas_dir
from gateway.demo.area import demo_config

pytestmark = pytest.mark.unit

REGISTRY = parse_config(
    demo_config("amqp://guest:guest@127.0.0.1:5672/x", date(2026, 11, 23)), Path("/a/gateway.toml")
).registry
POLICE = load_profile(BUILTIN / "police")
EDUCATION = load_profile(BUILTIN / "education")
PPN = (BUILTIN / "police" / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()
CFC = (BUILTIN / "education" / "samples" / "causes-for-concern.csv").read_bytes()
REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()


def test_education_may_send_a_upn_to_the_hub() -> None:
    prepared = prepare(EDUCATION.inbound, CFC, "cfc.csv", "education", ["hub"], REGISTRY)
    assert [p.message_type for p in prepared] == ["Referral", "Referral"]


def test_police_may_not_send_a_upn() -> None:
    with_upn = PPN.replace(
        b"<NHSNumber>9434765870</NHSNumber>",
        b"<NHSNumber>9434765870</NHSNumber><UPN>B801200005001</UPN>",
    )
    with pytest.raises(Refused) as caught:
        prepare(POLICE.inbound, with_upn, "ppn.xml", "police", ["hub"], REGISTRY)
    assert caught.value.stage == "policy"
    assert "a UPN may travel only in education flows; police (police) may not send one to hub" in (
        caught.value.reason
    )
    assert "B801200005001" not in caught.value.reason


def test_canonical_input_with_a_upn_is_refused_for_a_non_education_sender() -> None:
    with pytest.raises(Refused, match="policy"):
        prepare(Canonical(), REFERRAL, "r.xml", "health", ["hub"], REGISTRY)


def test_a_mapped_document_that_fails_the_schema_names_source_and_element() -> None:
    bad = PPN.replace(b"<Postcode>ZZ1 1AA</Postcode>", b"<Postcode>not a postcode</Postcode>")
    with pytest.raises(Refused) as caught:
        prepare(POLICE.inbound, bad, "ppn.xml", "police", ["hub"], REGISTRY)
    assert caught.value.stage == "schema"
    assert "ppn.xml:" in caught.value.reason and "Postcode" in caught.value.reason
    assert "not a postcode" not in caught.value.redacted


def test_a_row_that_fails_the_schema_names_its_line() -> None:
    bad = CFC.replace(b"2026-11-23T08:50:00Z", b"23/11/2026 08:50")
    with pytest.raises(Refused) as caught:
        prepare(EDUCATION.inbound, bad, "cfc.csv", "education", ["hub"], REGISTRY)
    assert caught.value.stage == "schema"
    assert caught.value.reason.startswith("cfc.csv line 3:")
    assert "ContactReceivedAt" in caught.value.reason


def test_a_native_file_that_does_not_map() -> None:
    with pytest.raises(Refused) as caught:
        prepare(POLICE.inbound, b"<Other/>", "x.xml", "police", ["hub"], REGISTRY)
    assert caught.value.stage == "mapping"
    assert "x.xml: line 1: PPNExport: the root is Other" in caught.value.reason
