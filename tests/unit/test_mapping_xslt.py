"""XSLT mappings: the police PPN profile, errors naming file, line and field, and no file access."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from adapters.mapping import MappingError
from adapters.mapping.xslt import XsltMapping
from adapters.profile import BUILTIN
from gateway.core import schemas

pytestmark = pytest.mark.unit

POLICE = BUILTIN / "police"
SAMPLE = (POLICE / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()
M = "{urn:mash-gateway:v1}"


@pytest.fixture(scope="module")
def ppn() -> XsltMapping:
    return XsltMapping(POLICE / "ppn-to-referral.xsl")


def test_sample_notice_maps_to_a_valid_referral(ppn: XsltMapping) -> None:
    (mapped,) = ppn(SAMPLE, "ppn.xml")
    root = schemas.validate(mapped.payload, mapped.source)
    assert root.findtext(f"{M}Rag") == "Amber"
    assert [c.get("code") for c in root.iter(f"{M}Concern")] == ["3A", "EMO"]
    ids = {i.get("scheme"): i.text for i in root.iter(f"{M}Identifier")}
    assert ids == {
        "nhs-number": "9434765870",
        "local": "PPN-2026-004512",
        "pnc-id": "2015/1234567Y",
    }
    kinds = [r.get("kind") for r in root.iter(f"{M}Relationship")]
    assert kinds == ["mother", "parent-partner"]
    assert b"adapter-line" not in mapped.payload  # the line annotations never leak out


def test_unknown_code_names_file_line_and_field(ppn: XsltMapping) -> None:
    bad = SAMPLE.replace(b"<Category>EMOTIONAL</Category>", b"<Category>HOAX</Category>")
    with pytest.raises(MappingError) as caught:
        ppn(bad, "ppn-0042.xml")
    line = SAMPLE.decode().splitlines().index("      <Category>EMOTIONAL</Category>") + 1
    assert str(caught.value) == (
        f"ppn-0042.xml: line {line}: PPN/Occurrence/Category: unknown category HOAX"
    )
    assert "HOAX" not in caught.value.redacted()


def test_missing_date_of_birth_is_refused(ppn: XsltMapping) -> None:
    bad = SAMPLE.replace(b"<DOB>2016-05-14</DOB>", b"")
    child = SAMPLE.decode().splitlines().index("    <Child>") + 1
    with pytest.raises(MappingError) as caught:
        ppn(bad, "ppn.xml")
    assert str(caught.value) == f"ppn.xml: line {child}: PPN/Child/DOB: missing or empty"


def test_truncated_file_names_the_line(ppn: XsltMapping) -> None:
    with pytest.raises(MappingError, match=r"ppn.xml: document: .*not well-formed"):
        ppn(SAMPLE[: len(SAMPLE) // 2], "ppn.xml")


def test_doctype_and_entities_are_refused(ppn: XsltMapping) -> None:
    hostile = SAMPLE.replace(
        b"<PPNExport", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<PPNExport', 1
    )
    with pytest.raises(MappingError, match="DOCTYPE declarations are not allowed"):
        ppn(hostile, "ppn.xml")


def test_two_notices_in_one_file_are_refused(ppn: XsltMapping) -> None:
    start, end = SAMPLE.index(b"  <PPN "), SAMPLE.index(b"</PPNExport>")
    doubled = SAMPLE[:end] + SAMPLE[start:end] + SAMPLE[end:]
    with pytest.raises(MappingError, match="holds 2 notices; export exactly one per file"):
        ppn(doubled, "ppn.xml")


def test_a_stylesheet_cannot_read_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text("<secret>do not read</secret>")
    sheet = tmp_path / "reader.xsl"
    sheet.write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        f'<xsl:template match="/"><out><xsl:copy-of select="document(\'{secret}\')"/></out>'
        "</xsl:template></xsl:stylesheet>"
    )
    with pytest.raises(MappingError) as caught:
        XsltMapping(sheet)(b"<x/>", "in.xml")
    assert "do not read" not in str(caught.value)


def test_copied_line_annotations_are_stripped(tmp_path: Path) -> None:
    sheet = tmp_path / "copy.xsl"
    sheet.write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/>'
        "</xsl:copy></xsl:template></xsl:stylesheet>"
    )
    (mapped,) = XsltMapping(sheet)(b'<a x="1"><b/></a>', "in.xml")
    root = etree.fromstring(mapped.payload)
    assert dict(root.attrib) == {"x": "1"}
    assert b"adapter-line" not in mapped.payload


def test_a_stylesheet_that_does_not_compile_is_named(tmp_path: Path) -> None:
    sheet = tmp_path / "broken.xsl"
    sheet.write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:bogus/></xsl:stylesheet>'
    )
    with pytest.raises(MappingError, match=r"broken.xsl: stylesheet: does not compile"):
        XsltMapping(sheet)
