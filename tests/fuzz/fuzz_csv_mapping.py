"""Fuzz the CSV mapping (adapters/mapping/csv_mapping.py) with education's real profile.

Feeds: a CSV export as the file drop reads it, mapped by
adapters/profiles/education (concerns.csvmap.toml and its template), then
each document it makes schema-checked, as adapters/prepare.py does.
Oracle: the mapping raises only MappingError, and what it makes is XML the
schema check can read: only SchemaViolation from there, never
UnsafeXmlError (the mapping's own output must be well-formed).
"""

from __future__ import annotations

from pathlib import Path

import atheris

with atheris.instrument_imports(include=["gateway", "adapters", "csv"]):
    from adapters.mapping import MappingError
    from adapters.mapping.csv_mapping import CsvMapping
    from gateway.core import schemas
    from gateway.core.schemas import SchemaViolation

import contextlib

from fuzz_common import main

PROFILE = Path(__file__).resolve().parents[2] / "adapters" / "profiles" / "education"
MAPPING = CsvMapping(PROFILE / "concerns.csvmap.toml")


def one_input(data: bytes) -> None:
    for document in MAPPING(data, "fuzz.csv"):
        with contextlib.suppress(SchemaViolation):
            schemas.checked(document.payload, document.source)


def seeds() -> dict[str, bytes]:
    sample = (PROFILE / "samples" / "causes-for-concern.csv").read_bytes()
    header, *rows = sample.splitlines(keepends=True)
    found = {"sample": sample, "header-only": header}
    for index, row in enumerate(rows, start=1):
        found[f"row-{index}"] = header + row
    found["semicolons"] = sample.replace(b",", b";")
    return found


if __name__ == "__main__":
    main(one_input, (MappingError,), seeds)
