"""Fuzz the JSON mapping (adapters/mapping/json_xslt.py) with probation's real profile.

Feeds: a JSON body as the HTTP adapter receives it, turned into XML and
mapped by adapters/profiles/probation's stylesheet, then each document it
makes schema-checked, as adapters/prepare.py does.
Oracle: the mapping raises only MappingError, and what it makes is XML the
schema check can read: only SchemaViolation from there, never UnsafeXmlError.
"""

from __future__ import annotations

import json
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["gateway", "adapters", "json"]):
    from adapters.mapping import MappingError
    from adapters.mapping.json_xslt import JsonXsltMapping
    from gateway.core import schemas
    from gateway.core.schemas import SchemaViolation

import contextlib

from fuzz_common import main

PROFILE = Path(__file__).resolve().parents[2] / "adapters" / "profiles" / "probation"
MAPPING = JsonXsltMapping(PROFILE / "search-result-to-response.json.xsl")


def one_input(data: bytes) -> None:
    for document in MAPPING(data, "fuzz.json"):
        with contextlib.suppress(SchemaViolation):
            schemas.checked(document.payload, document.source)


def seeds() -> dict[str, bytes]:
    sample = (PROFILE / "samples" / "search-result.json").read_bytes()
    value = json.loads(sample)
    nothing_found = dict(value, records=[])
    return {
        "sample": sample,
        "compact": json.dumps(value, separators=(",", ":")).encode(),
        "nothing-found": json.dumps(nothing_found).encode(),
        "scalars": b'{"a": 1, "b": true, "c": null, "d": [1.5, "x", false]}',
    }


if __name__ == "__main__":
    main(one_input, (MappingError,), seeds)
