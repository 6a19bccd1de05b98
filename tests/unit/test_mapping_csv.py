"""The declarative CSV mapping: the education profile, and errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from adapters.mapping import MappingError
from adapters.mapping.csv_mapping import CsvMapping
from adapters.profile import BUILTIN
from gateway.core import schemas

pytestmark = pytest.mark.unit

EDUCATION = BUILTIN / "education"
SAMPLE = (EDUCATION / "samples" / "causes-for-concern.csv").read_bytes()
HEADER, ROW1, ROW2 = SAMPLE.decode().splitlines()
M = "{urn:mash-gateway:v1}"


@pytest.fixture(scope="module")
def concerns() -> CsvMapping:
    return CsvMapping(EDUCATION / "concerns.csvmap.toml")


def csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def test_each_row_becomes_a_valid_referral(concerns: CsvMapping) -> None:
    documents = concerns(SAMPLE, "cfc.csv")
    assert [d.source for d in documents] == ["cfc.csv line 2", "cfc.csv line 3"]
    first, second = (schemas.validate(d.payload, d.source) for d in documents)
    assert first.findtext(f"{M}Subjects/{M}Subject/{M}DateOfBirth") == "2016-05-14"
    assert first.find(f"{M}Subjects/{M}Subject/{M}Identifier").get("scheme") == "upn"
    assert first.find(f"{M}Consent/{M}NotSought") is not None
    assert second.find(f"{M}Consent/{M}Given") is not None
    assert second.find(f"{M}Consent/{M}NotSought") is None
    assert [c.get("code") for c in second.iter(f"{M}Concern")] == ["NEG"]
    assert b"csv-mapping" not in documents[0].payload


def test_bad_date_names_file_line_and_field(concerns: CsvMapping) -> None:
    with pytest.raises(MappingError) as caught:
        concerns(csv(ROW1, ROW2.replace("14/05/2016", "31/02/2016")), "cfc.csv")
    assert str(caught.value) == (
        "cfc.csv: line 3: Subject/DateOfBirth: column 'dob': '31/02/2016' is not a date in %d/%m/%Y"
    )
    assert "31/02" not in caught.value.redacted()


def test_unknown_code_lists_the_allowed_values(concerns: CsvMapping) -> None:
    with pytest.raises(
        MappingError, match=r"line 2: Concerns/Concern/@code: .*'Bullying'.*Neglect"
    ):
        concerns(csv(ROW1.replace("Domestic abuse", "Bullying")), "cfc.csv")


def test_missing_required_value(concerns: CsvMapping) -> None:
    with pytest.raises(
        MappingError, match=r"line 2: Subject/Name/Family: column 'surname' is empty"
    ):
        concerns(csv(ROW1.replace(",Example,", ",,")), "cfc.csv")


def test_truncated_row_is_refused(concerns: CsvMapping) -> None:
    with pytest.raises(
        MappingError, match=r"cfc.csv: line 3: row: has 5 fields, the header has 18"
    ):
        concerns(csv(ROW1, ",".join(ROW2.split(",")[:5])), "cfc.csv")


def test_missing_column_in_the_header(concerns: CsvMapping) -> None:
    header = HEADER.replace("upn,", "pupil,")
    with pytest.raises(
        MappingError, match=r"line 1: Subject/Identifier\[@scheme=upn\]: column 'upn'"
    ):
        concerns(f"{header}\n{ROW1}\n".encode(), "cfc.csv")


def test_not_utf8_and_empty_files(concerns: CsvMapping) -> None:
    with pytest.raises(MappingError, match="not UTF-8 text"):
        concerns(b"\xff\xfe\x00garbage", "cfc.csv")
    with pytest.raises(MappingError, match="the file is empty"):
        concerns(b"", "cfc.csv")
    with pytest.raises(MappingError, match="no data rows"):
        concerns(csv(), "cfc.csv")


def test_values_cannot_inject_markup(concerns: CsvMapping) -> None:
    row = ROW1.replace("Jamie,Example", "<Given>x</Given>,Example")
    (document,) = concerns(csv(row), "cfc.csv")
    given = etree.fromstring(document.payload).findtext(f"{M}Subjects/{M}Subject/{M}Name/{M}Given")
    assert given == "<Given>x</Given>"


def test_a_placeholder_without_a_column_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.xml").write_text("<a>{nope}</a>")
    (tmp_path / "m.toml").write_text('template = "t.xml"\n[columns.x]\nfield = "X"\n')
    with pytest.raises(MappingError, match=r"t.xml: nope: placeholder has no \[columns\] entry"):
        CsvMapping(tmp_path / "m.toml")


@pytest.mark.parametrize("character", ["\x00", "\x0b", "\ufffe"])
def test_a_character_xml_cannot_carry_is_refused_naming_line_and_field(
    concerns: CsvMapping, character: str
) -> None:
    """Found by tests/fuzz (fuzz_csv_mapping): lxml refused it with a bare ValueError."""
    row = ROW1.replace("Elmfield Primary School", f"Elmfield{character}School")
    with pytest.raises(MappingError) as caught:
        concerns(csv(row), "cfc.csv")
    assert caught.value.where == "line 2"
    assert caught.value.field == "Referrer/Organisation"
    assert f"U+{ord(character):04X}" in caught.value.problem
