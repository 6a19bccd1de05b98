"""A declarative CSV-to-canonical mapping: a mapping file and an XML template, no code.

The mapping file (TOML) names the template and says, per column, whether it
is required, what it means (the field name errors use), and how to convert
it::

    template = "referral.template.xml"
    delimiter = ","

    [columns.dob]
    field = "Subject/DateOfBirth"
    required = true
    date = "%d/%m/%Y"                      # converted to ISO 8601

    [columns.concern]
    field = "Concerns/Concern/@code"
    values = { "Neglect" = "NEG", "Domestic abuse" = "3A" }   # anything else is refused

The template is the canonical document with ``{column}`` placeholders in text
and attribute values, ``map:if="column"`` (namespace ``MAP_NS``) on an
element that is left out when that column is empty, and
``map:if="column=value"`` on one kept only when the column (after
conversion) has that value: how a choice such as consent given, refused or
not sought is written. Each data row becomes
one document. Values are set as text through lxml, so a value can never
inject markup. Errors name the file, the line and the column's field.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.mapping import Mapped, MappingError
from gateway.core import xmlsafe

MAP_NS = "urn:mash-gateway:csv-mapping"
_IF = f"{{{MAP_NS}}}if"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_ROWS = 10_000


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    field: str
    required: bool = False
    date_format: str | None = None
    values: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def convert(self, raw: str, source: str, where: str) -> str:
        value = raw.strip()
        problem = xmlsafe.text_problem(value)
        if problem is not None:
            raise MappingError(source, where, self.field, f"column {self.name!r} {problem}")
        if not value:
            if self.required:
                raise MappingError(source, where, self.field, f"column {self.name!r} is empty")
            return ""
        if self.date_format is not None:
            try:
                return datetime.strptime(value, self.date_format).date().isoformat()
            except ValueError:
                raise MappingError(
                    source,
                    where,
                    self.field,
                    f"column {self.name!r}: {value!r} is not a date in {self.date_format}",
                ) from None
        if self.values:
            if value not in self.values:
                allowed = ", ".join(sorted(self.values))
                raise MappingError(
                    source,
                    where,
                    self.field,
                    f"column {self.name!r}: unknown value {value!r} (allowed: {allowed})",
                )
            return self.values[value]
        return value


class CsvMapping:
    """One canonical document per CSV data row, from a template and a column table."""

    def __init__(self, mapping_file: Path) -> None:
        spec_source = str(mapping_file)
        try:
            spec = tomllib.loads(mapping_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MappingError(spec_source, None, "mapping", f"cannot be read: {exc}") from None
        self.delimiter = _text(spec, "delimiter", spec_source, ",")
        template_path = mapping_file.parent / _text(spec, "template", spec_source)
        try:
            tree = etree.parse(str(template_path), parser=xmlsafe.schema_parser())
        except (OSError, etree.XMLSyntaxError) as exc:
            raise MappingError(str(template_path), None, "template", f"unreadable: {exc}") from None
        self.template = tree.getroot()
        self.columns = _columns(spec.get("columns"), spec_source)
        used = _placeholders(self.template)
        unknown = sorted(used - set(self.columns))
        if unknown:
            raise MappingError(
                str(template_path), None, unknown[0], "placeholder has no [columns] entry"
            )

    def __call__(self, data: bytes, source: str) -> list[Mapped]:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MappingError(
                source, None, "document", f"not UTF-8 text (byte {exc.start})"
            ) from None
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter, strict=True)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise MappingError(source, "line 1", "header", "the file is empty") from None
        except csv.Error as exc:
            raise MappingError(source, "line 1", "header", f"not valid CSV: {exc}") from None
        missing = [c for c in self.columns if c not in header]
        if missing:
            field_name = self.columns[missing[0]].field
            raise MappingError(
                source, "line 1", field_name, f"column {missing[0]!r} is missing from the header"
            )
        documents: list[Mapped] = []
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                where = f"line {reader.line_num}"
                raise MappingError(source, where, "row", f"not valid CSV: {exc}") from None
            where = f"line {reader.line_num}"
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise MappingError(
                    source,
                    where,
                    "row",
                    f"has {len(cells)} fields, the header has {len(header)} (truncated?)",
                )
            if len(documents) == MAX_ROWS:
                raise MappingError(source, where, "row", f"more than {MAX_ROWS} rows")
            row = dict(zip(header, cells, strict=True))
            values = {
                name: column.convert(row[name], source, where)
                for name, column in self.columns.items()
            }
            documents.append(Mapped(self._render(values), f"{source} {where}"))
        if not documents:
            raise MappingError(source, None, "document", "no data rows")
        return documents

    def _render(self, values: Mapping[str, str]) -> bytes:
        root = copy.deepcopy(self.template)
        for element in list(root.iter(etree.Element)):
            condition = element.get(_IF)
            if condition is None:
                continue
            parent = element.getparent()
            if not _holds(condition, values) and parent is not None:
                parent.remove(element)
            else:
                del element.attrib[_IF]
        for element in root.iter(etree.Element):
            if element.text:
                element.text = _fill(element.text, values)
            for name, value in element.attrib.items():
                element.set(name, _fill(str(value), values))
        etree.cleanup_namespaces(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _holds(condition: str, values: Mapping[str, str]) -> bool:
    column, equals, expected = condition.partition("=")
    return values.get(column, "") == expected if equals else bool(values.get(column))


def _fill(text: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _placeholders(root: etree._Element) -> set[str]:
    found = set()
    for element in root.iter(etree.Element):
        for text in [element.text or "", *element.attrib.values()]:
            found.update(PLACEHOLDER.findall(text))
        condition = element.get(_IF)
        if condition:
            found.add(condition.partition("=")[0])
    return found


def _text(spec: Mapping[str, Any], key: str, source: str, default: str | None = None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value:
        raise MappingError(source, None, key, "missing or not a string")
    return value


def _columns(value: Any, source: str) -> dict[str, Column]:
    if not isinstance(value, dict) or not value:
        raise MappingError(source, None, "columns", "must be a non-empty table")
    columns = {}
    for name, spec in value.items():
        where = f"columns.{name}"
        if not isinstance(spec, dict):
            raise MappingError(source, None, where, "must be a table")
        unknown = sorted(set(spec) - {"field", "required", "date", "values"})
        if unknown:
            raise MappingError(source, None, f"{where}.{unknown[0]}", "unknown key")
        values = spec.get("values", {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise MappingError(source, None, f"{where}.values", "must map strings to strings")
        date_format = spec.get("date")
        if date_format is not None and not isinstance(date_format, str):
            raise MappingError(source, None, f"{where}.date", "must be a strptime format")
        columns[name] = Column(
            name=name,
            field=_text(spec, "field", source, name),
            required=bool(spec.get("required", False)),
            date_format=date_format,
            values=values,
        )
    return columns
