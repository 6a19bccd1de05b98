"""XSLT mappings: compiled once, run on safely parsed input, with no file or network access.

The stylesheet is loaded with the safe parser and compiled with
``XSLTAccessControl.DENY_ALL``, so neither it nor a hostile input can read
files, write files or reach the network (no ``document()``, no
``xsl:include`` at run time). The input is parsed with gateway.core.xmlsafe.

Errors name the source line. Before transforming, every input element gets
an ``ln:line`` attribute (namespace ``LINE_NS``) saying where it came from
("line 12"; a JSON path for JSON input), so a stylesheet can refuse an
input with::

    <xsl:message terminate="yes">
      <xsl:value-of select="concat(@ln:line, '|Subject/DateOfBirth|missing')"/>
    </xsl:message>

that is ``where|field|problem``; the mapping turns it into a MappingError.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from adapters.mapping import Mapped, MappingError
from gateway.core import xmlsafe

LINE_NS = "urn:mash-gateway:adapter-line"
_LINE = f"{{{LINE_NS}}}line"
# No file or network access for the stylesheet (the stubs lack these attributes).
DENY_ALL: etree.XSLTAccessControl = etree.XSLTAccessControl.DENY_ALL  # type: ignore[attr-defined]


class XsltMapping:
    """A compiled stylesheet, applied to one native XML document at a time."""

    def __init__(self, stylesheet: Path) -> None:
        self.name = stylesheet.name
        try:
            doc = etree.parse(str(stylesheet), parser=xmlsafe.schema_parser())
            self._transform = etree.XSLT(doc, access_control=DENY_ALL)
        except (OSError, etree.XMLSyntaxError, etree.XSLTParseError) as exc:
            raise MappingError(
                str(stylesheet), None, "stylesheet", f"does not compile: {exc}"
            ) from None

    def __call__(self, data: bytes, source: str) -> list[Mapped]:
        try:
            root = xmlsafe.parse(data, source)
        except xmlsafe.UnsafeXmlError as exc:
            raise MappingError(
                source, None, "document", str(exc).removeprefix(f"{source}:")
            ) from None
        for element in root.iter(etree.Element):
            element.set(_LINE, f"line {element.sourceline or '?'}")
        return self.apply(root, source)

    def apply(self, root: etree._Element, source: str) -> list[Mapped]:
        """Transform a parsed tree whose elements carry ``ln:line`` (where each came from)."""
        try:
            result = self._transform(root.getroottree())
        except etree.XSLTApplyError as exc:
            raise self._refusal(source, str(exc)) from None
        output = result.getroot()
        if output is None:
            raise MappingError(source, None, "document", f"{self.name} produced no document")
        _strip_lines(output)
        etree.cleanup_namespaces(output)
        payload = etree.tostring(output, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        return [Mapped(payload, source)]

    def _refusal(self, source: str, fallback: str) -> MappingError:
        log = self._transform.error_log  # type: ignore[attr-defined]
        messages = [entry.message for entry in log]
        text = next((m for m in messages if m.count("|") >= 2), None)
        if text is None:
            return MappingError(source, None, "document", f"{self.name} failed: {fallback}")
        where, field, problem = text.split("|", 2)
        return MappingError(source, where or None, field, problem)


def _strip_lines(root: etree._Element) -> None:
    """Drop line attributes a stylesheet copied through with ``@*``."""
    for element in root.iter(etree.Element):
        if _LINE in element.attrib:
            del element.attrib[_LINE]
