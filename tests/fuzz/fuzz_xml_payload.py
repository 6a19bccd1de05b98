"""Fuzz the XML payload check: safe parsing, the schemas, and the header facts an edge reads.

Feeds: a canonical payload document, as an edge's ``submit`` or the e-mail
intake hands it over; or, for an input starting with a zero byte, one of the
valid examples with one to three element texts or attribute values replaced
by text the rest of the input makes, so that values of every type reach the
schema and the readers after it (byte mutations of a whole document mostly
break its syntax). It runs what happens before sealing: ``schemas.checked``
(gateway/core/xmlsafe, the XSDs, the identifier and outcome rules), the
problems' redacted text (what logs and receipts carry), then the payload's
facts (purpose, lawful bases, RAG, due time) and the envelope header built
from them. Oracle: only UnsafeXmlError, SchemaViolation and
HeaderPayloadMismatch; a document the check accepts must give a header the
envelope accepts too.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from pathlib import Path

import atheris
from lxml import etree

with atheris.instrument_imports(include=["gateway"]):
    from gateway.core import schemas, xmlsafe
    from gateway.core.envelope import HeaderFields, WrappedKey
    from gateway.core.envelope.header import header_element
    from gateway.core.payload_facts import (
        HeaderPayloadMismatch,
        PayloadFacts,
        header_facts,
        payload_facts,
    )
    from gateway.core.resources import schemas_dir
    from gateway.core.schemas import SchemaViolation
    from gateway.core.xmlsafe import UnsafeXmlError

from fuzz_common import main, replace_values

NOW = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
VALID = [
    xmlsafe.parse(path.read_bytes(), path.name)
    for path in sorted((schemas_dir() / "examples" / "valid").glob("*.xml"))
]
NOTHING_STATED = PayloadFacts(None, (), None, None)
WRAP = (WrappedKey("health", "health.encrypt.0000000000000000", b"\0" * 48),)


def with_values(data: bytes) -> bytes | None:
    """A valid example with values taken from ``data``; None when lxml cannot hold them."""
    given = atheris.FuzzedDataProvider(data)
    root = copy.deepcopy(VALID[given.ConsumeIntInRange(0, len(VALID) - 1)])
    if not replace_values(root, given):
        return None
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def one_input(data: bytes) -> None:
    if data[:1] == b"\0":
        made = with_values(data[1:])
        if made is None:
            return
        data = made
    try:
        document = schemas.checked(data, "fuzz.xml")
    except SchemaViolation as exc:
        exc.redacted()
        raise
    facts = header_facts(payload_facts(document.root), NOTHING_STATED, "fuzz.xml")
    fields = HeaderFields(
        message_id=str(uuid.UUID(int=1, version=4)),
        correlation_id="mash-2026-0001",
        message_type=document.message_type,
        sender="police",
        recipients=("health",),
        created_at=NOW,
        purpose=facts.purpose,
        lawful_bases=facts.lawful_bases,
        rag=facts.rag,
        deadline=facts.deadline,
    )
    header_element(fields, "police.sign.0000000000000000", WRAP, 65536)


def seeds() -> dict[str, bytes]:
    examples = schemas_dir() / "examples"
    found = {}
    for path in sorted(Path(examples).glob("*/*.xml")):
        found[f"{path.parent.name}-{path.stem}"] = path.read_bytes()
    for index in range(len(VALID)):
        found[f"values-{index}"] = b"\0" + bytes([index]) * 4 + b"2025-03-11T09:45:00Z" * 2
    return found


if __name__ == "__main__":
    main(one_input, (UnsafeXmlError, SchemaViolation, HeaderPayloadMismatch), seeds)
