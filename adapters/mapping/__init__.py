"""Mappings between an agency's native format and the canonical XML, each way.

A mapping is pure: native bytes and a source name in, canonical documents
out (one per record: a CSV export may hold several), or a MappingError that
names the source file, the row or line, and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.core.errors import GatewayError

__all__ = [
    "Canonical",
    "Mapped",
    "Mapping",
    "MappingError",
    "csv_mapping",
    "json_xslt",
    "xslt",
]


class MappingError(GatewayError):
    """A native document does not map; the message names the file, row or line, and field.

    The message may quote the offending value: it goes to the ``.reason``
    file or the HTTP response for the person fixing the export, never to logs
    (``redacted`` is for logs).
    """

    def __init__(self, source: str, where: str | None, field: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.field = field
        self.problem = problem
        place = f"{source}: {where}" if where else source
        super().__init__(f"{place}: {field}: {problem}")

    def redacted(self) -> str:
        place = f"{self.source}: {self.where}" if self.where else self.source
        return f"{place}: {self.field}: does not map"


@dataclass(frozen=True)
class Mapped:
    """One canonical document, and where in the native file it came from."""

    payload: bytes
    source: str  # e.g. "pupils.csv row 3", named in schema errors


class Mapping(Protocol):
    def __call__(self, data: bytes, source: str) -> list[Mapped]: ...


class Canonical:
    """The identity mapping: the agency system already speaks the canonical XML."""

    def __call__(self, data: bytes, source: str) -> list[Mapped]:
        return [Mapped(data, source)]
