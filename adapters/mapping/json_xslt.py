"""JSON mappings: JSON becomes a plain XML tree, then an XSLT stylesheet maps it.

Decision: rather than a second declarative language, JSON input is turned
into XML by fixed rules and mapped with the same safe XSLT machinery as
native XML (adapters.mapping.xslt), so one way of writing mappings serves
both. The rules:

- the document is ``<json>``; an object member is an element named by its
  key (a key that is not a valid XML name is refused);
- an array is its key's element holding one ``<item>`` per entry;
- strings and numbers are text, booleans ``true``/``false``; null members
  are left out.

Each element's ``ln:line`` holds its JSON path (``$.records[0].summary``),
so a stylesheet's refusals name where in the body the problem is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.mapping import Mapped, MappingError
from adapters.mapping.xslt import LINE_NS, XsltMapping
from gateway.core import xmlsafe
from gateway.core.xmlsafe import MAX_DEPTH

_LINE = f"{{{LINE_NS}}}line"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


class JsonXsltMapping:
    def __init__(self, stylesheet: Path) -> None:
        self._xslt = XsltMapping(stylesheet)

    def __call__(self, data: bytes, source: str) -> list[Mapped]:
        try:
            value = json.loads(data)
        except UnicodeDecodeError:
            raise MappingError(source, None, "document", "not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            raise MappingError(source, where, "document", f"not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise MappingError(source, None, "document", "nested too deeply") from None
        root = etree.Element("json")
        root.set(_LINE, "$")
        _fill(root, value, "$", source, 1)
        return self._xslt.apply(root, source)


def _fill(element: etree._Element, value: Any, path: str, source: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MappingError(source, path, "document", f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for key, member in value.items():
            if member is None:
                continue
            if not NAME.fullmatch(key):
                raise MappingError(source, path, key, "is not a usable field name")
            _child(element, key, member, f"{path}.{key}", source, depth)
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            _child(element, "item", entry, f"{path}[{index}]", source, depth)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        text = str(value)
        problem = xmlsafe.text_problem(text)
        if problem is not None:
            raise MappingError(source, path, "value", problem)
        element.text = text


def _child(
    parent: etree._Element, name: str, value: Any, path: str, source: str, depth: int
) -> None:
    child = etree.SubElement(parent, name)
    child.set(_LINE, path)
    _fill(child, value, path, source, depth + 1)
