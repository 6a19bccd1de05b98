"""The one XML parser configuration used everywhere.

No DTDs, no entity expansion, no network, no XInclude, and limits on size
and nesting depth, so a hostile document cannot read files, reach the
network or exhaust memory (billion laughs, XXE, deep nesting).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import cast

from lxml import etree

from gateway.core.errors import GatewayError

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
# Characters XML 1.0 cannot hold (section 2.2: C0 controls but tab, LF and CR,
# surrogates, U+FFFE and U+FFFF). lxml refuses them in text and attribute values
# with a bare ValueError, so values from outside are checked against this first.
NOT_XML_CHARACTER = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class UnsafeXmlError(GatewayError):
    """The document is not well-formed or breaks a safety limit."""


@dataclass(frozen=True)
class XmlLimits:
    max_bytes: int = MAX_DOCUMENT_BYTES
    max_depth: int = MAX_DEPTH


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse(data: bytes, source: str = "<bytes>", limits: XmlLimits = XmlLimits()) -> etree._Element:
    """Parse ``data`` safely and return the root element.

    ``source`` names the document in errors (a file name, or a message id).
    """
    if len(data) > limits.max_bytes:
        raise UnsafeXmlError(f"{source}: document is {len(data)} bytes, limit {limits.max_bytes}")
    try:
        root: etree._Element = etree.fromstring(data, parser=_new_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else "?"
        raise UnsafeXmlError(f"{source}:{line}: not well-formed XML: {exc.msg}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # type: ignore[attr-defined]
        raise UnsafeXmlError(f"{source}:1: DOCTYPE declarations are not allowed")
    _check_depth(root, source, limits.max_depth)
    return root


def _check_depth(root: etree._Element, source: str, max_depth: int) -> None:
    deeper = cast(list[etree._Element], _deeper_than(max_depth)(root))
    if deeper:
        line = deeper[0].sourceline
        raise UnsafeXmlError(f"{source}:{line}: element nesting deeper than {max_depth}")


@functools.lru_cache(maxsize=8)
def _deeper_than(max_depth: int) -> etree.XPath:
    """The nodes (elements, comments, processing instructions) nested deeper than
    ``max_depth``: one compiled path, walked in C, instead of a Python walk of every
    element, which cost more than the parse itself (every message is parsed several times)."""
    path = "/*" * max_depth
    return etree.XPath(f"{path}/* | {path}/comment() | {path}/processing-instruction()")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be XML character data, naming the first such character; None if it can.

    Callers building documents from native values (mappings, mail forms) turn this
    into their own error, so a stray control character is refused naming its field.
    """
    found = NOT_XML_CHARACTER.search(text)
    if found is None:
        return None
    return f"holds U+{ord(found.group()):04X}, a character XML cannot carry"


def schema_parser() -> etree.XMLParser:
    """Parser for loading our own XSD and XSLT files: local includes only, no network."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
