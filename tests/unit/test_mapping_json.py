"""JSON mappings (JSON to plain XML, then XSLT): the probation profile; errors name the path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.mapping import MappingError
from adapters.mapping.json_xslt import JsonXsltMapping
from adapters.profile import BUILTIN
from gateway.core import schemas

pytestmark = pytest.mark.unit

PROBATION = BUILTIN / "probation"
SAMPLE = json.loads((PROBATION / "samples" / "search-result.json").read_text())
M = "{urn:mash-gateway:v1}"


@pytest.fixture(scope="module")
def search() -> JsonXsltMapping:
    return JsonXsltMapping(PROBATION / "search-result-to-response.json.xsl")


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_sample_maps_to_a_valid_response(search: JsonXsltMapping) -> None:
    (mapped,) = search(body(SAMPLE), "body")
    root = schemas.validate(mapped.payload, mapped.source)
    indicator = root.find(f"{M}RecordsFound/{M}RiskIndicator")
    assert indicator is not None
    assert (indicator.get("level"), indicator.get("concern")) == ("high", "3A")
    assert [c.text for c in root.iter(f"{M}ReleaseCondition")] == [
        "no-onward-disclosure-without-originator-consent",
        "consult-originator-before-use-in-proceedings",
    ]


def test_no_records_is_a_no_records_answer(search: JsonXsltMapping) -> None:
    (mapped,) = search(body({**SAMPLE, "records": [], "risks": []}), "body")
    root = schemas.validate(mapped.payload, mapped.source)
    searched = [s.text for s in root.iter(f"{M}SystemsSearched")]
    assert searched == ["Case management system", "Risk assessment system"]


def test_refusal_names_the_json_path(search: JsonXsltMapping) -> None:
    bad = json.loads(json.dumps(SAMPLE))
    bad["risks"][0]["category"] = "ARSON"
    with pytest.raises(MappingError) as caught:
        search(body(bad), "body")
    assert str(caught.value) == "body: $.risks[0].category: category: unknown category ARSON"


def test_missing_field(search: JsonXsltMapping) -> None:
    officer = {k: v for k, v in SAMPLE["officer"].items() if k != "role"}
    with pytest.raises(MappingError, match=r"body: \$: officer.role: missing or empty"):
        search(body({**SAMPLE, "officer": officer}), "body")


def test_invalid_json_names_line_and_column(search: JsonXsltMapping) -> None:
    with pytest.raises(MappingError, match=r"body: line 2 column 1: document: not valid JSON"):
        search(b'{"officer":\n', "body")


def test_unusable_keys_and_deep_nesting_are_refused(search: JsonXsltMapping) -> None:
    with pytest.raises(MappingError, match=r"body: \$: a b: is not a usable field name"):
        search(body({"a b": 1}), "body")
    deep: object = "x"
    for _ in range(80):
        deep = {"a": deep}
    with pytest.raises(MappingError, match="nested deeper than 64"):
        search(body(deep), "body")


def test_strings_cannot_inject_markup(tmp_path: Path) -> None:
    sheet = tmp_path / "copy.json.xsl"
    sheet.write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/"><out><xsl:value-of select="/json/v"/></out></xsl:template>'
        "</xsl:stylesheet>"
    )
    (mapped,) = JsonXsltMapping(sheet)(body({"v": "<b>&amp;</b>"}), "body")
    assert b"&lt;b&gt;&amp;amp;&lt;/b&gt;" in mapped.payload


@pytest.mark.parametrize("character", ["\x00", "\x01", "\ud800", "\uffff"])
def test_a_string_xml_cannot_carry_is_refused_naming_its_path(
    search: JsonXsltMapping, character: str
) -> None:
    """Found by tests/fuzz (fuzz_json_mapping): lxml refused it with a bare ValueError."""
    document = json.loads(json.dumps(SAMPLE))
    document["officer"]["name"] = f"Lee{character}Okafor"
    with pytest.raises(MappingError) as caught:
        search(json.dumps(document).encode(), "result.json")
    assert caught.value.where == "$.officer.name"
    assert f"U+{ord(character):04X}" in caught.value.problem
