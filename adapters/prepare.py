"""From native bytes to canonical documents ready to seal: map, schema-check, apply the UPN rule.

Pure: values in, documents out, or a Refused naming the stage that failed
and why. The router cannot read payloads, so rules about content (the UPN
may travel only in education flows: gateway.core.sharing.upn_allowed) are applied
here, before anything is sealed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from adapters.mapping import Mapping, MappingError
from gateway.core import schemas
from gateway.core.registry import Registry
from gateway.core.schemas import SchemaViolation
from gateway.core.sharing import upn_refusal
from gateway.core.xmlsafe import UnsafeXmlError


@dataclass(frozen=True)
class Prepared:
    """A document ready to submit: checked here, so the edge does not check it again."""

    document: schemas.CheckedDocument
    source: str

    @property
    def message_type(self) -> str:
        return self.document.message_type


class Refused(Exception):
    """A native document the adapter will not send.

    ``stage`` is one of mapping, schema, policy, duplicate, read; ``reason``
    is for the person fixing the export (it may quote values), ``redacted``
    is for logs and metrics.
    """

    def __init__(self, stage: str, reason: str, redacted: str) -> None:
        self.stage = stage
        self.reason = reason
        self.redacted = redacted
        super().__init__(f"{stage}: {redacted}")


def prepare(
    mapping: Mapping,
    data: bytes,
    source: str,
    sender: str,
    recipients: Sequence[str],
    registry: Registry,
) -> list[Prepared]:
    """Every document in ``data``, mapped and checked; all or nothing."""
    try:
        mapped = mapping(data, source)
    except MappingError as exc:
        raise Refused("mapping", str(exc), exc.redacted()) from None
    prepared = []
    for document in mapped:
        try:
            checked = schemas.checked(document.payload, document.source)
        except SchemaViolation as exc:
            raise Refused("schema", str(exc), exc.redacted()) from None
        except UnsafeXmlError as exc:
            raise Refused("mapping", str(exc), str(exc)) from None
        _check_upn(checked.root, document.source, sender, recipients, registry)
        prepared.append(Prepared(checked, document.source))
    return prepared


def _check_upn(
    root: etree._Element,
    source: str,
    sender: str,
    recipients: Sequence[str],
    registry: Registry,
) -> None:
    problem = upn_refusal(root, source, sender, recipients, registry)
    if problem is not None:
        raise Refused("policy", problem, problem)
