"""Schema checks for the canonical payloads and the envelope header.

A document passes when the XSD for its root element accepts it and the
rules XSD 1.0 cannot express hold:
- every Identifier passes its scheme's check algorithm (gateway.core.identifiers);
- a local Identifier names its system;
- a Decision outcome of nfa carries advice or signposting.

All problems are collected, not just the first, so a sender fixes a file in
one pass. Each problem names the source, line and element. Problems quote
the offending values for the person fixing the file; ``redacted()`` drops
them for logs and receipts, which must never carry personal data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from functools import cache
from types import MappingProxyType
from typing import cast

from lxml import etree

from gateway.core import xmlsafe
from gateway.core.errors import GatewayError
from gateway.core.identifiers import IdentifierScheme, identifier_problem
from gateway.core.resources import schemas_dir

NAMESPACE = "urn:mash-gateway:v1"

MESSAGE_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "EnvelopeHeader": "envelope-header.xsd",
        "Referral": "referral.xsd",
        "InformationRequest": "information-request.xsd",
        "InformationResponse": "information-response.xsd",
        "Decision": "decision.xsd",
        "DeliveryReceipt": "delivery-receipt.xsd",
        "NonDelivery": "non-delivery.xsd",
        "Escalation": "escalation.xsd",
    }
)

_NS_PREFIX = "{" + NAMESPACE + "}"
_XSD_SUBJECT = re.compile(r"Element '([^']+)'(?:, attribute '([^']+)')?: ")
# lxml quotes offending values unescaped, so a value may hold quotes: match up
# to the phrase that always follows it.
_QUOTED_VALUE = re.compile(r"(^|The value |: )'.*'(?= is | has a length)", re.DOTALL)
REDACTED = "[redacted]"
_SCHEMES = frozenset(IdentifierScheme)


@dataclass(frozen=True)
class Problem:
    source: str
    line: int | None
    element: str
    message: str
    redacted_message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line or '?'}: {self.element}: {self.message}"

    def redacted(self) -> str:
        """The problem without any value taken from the document."""
        return f"{self.source}:{self.line or '?'}: {self.element}: {self.redacted_message}"


class SchemaViolation(GatewayError):
    """A document is well-formed but breaks its schema or a check the schema cannot express."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def redacted(self) -> str:
        return "\n".join(p.redacted() for p in self.problems)


@cache
def _compiled(xsd_name: str) -> etree.XMLSchema:
    path = schemas_dir() / xsd_name
    return etree.XMLSchema(etree.parse(str(path), parser=xmlsafe.schema_parser()))


def _line(element: etree._Element) -> int | None:
    line: int | None = getattr(element, "sourceline", None)  # the stubs leave it untyped
    return line


def _readable(text: str) -> str:
    return text.replace(_NS_PREFIX, "")


def message_type(root: etree._Element, source: str = "<bytes>") -> str:
    """The message type named by ``root`` (a key of MESSAGE_TYPES)."""
    qname = etree.QName(root)
    if qname.namespace != NAMESPACE or qname.localname not in MESSAGE_TYPES:
        raise SchemaViolation(
            [
                Problem(
                    source,
                    _line(root),
                    _readable(root.tag),
                    f"not a MASH gateway message: the root must be one of "
                    f"{', '.join(MESSAGE_TYPES)} in namespace {NAMESPACE}",
                    "not a MASH gateway message",
                )
            ]
        )
    return qname.localname


def _xsd_problem(entry: etree._LogEntry, source: str) -> Problem:
    message = _readable(entry.message)
    element = "document"
    subject = _XSD_SUBJECT.match(message)
    if subject is not None:
        element, attribute = subject.groups()
        message = message[subject.end() :]
        if attribute:
            message = f"attribute '{attribute}': {message}"
    return Problem(
        source, entry.line or None, element, message, _QUOTED_VALUE.sub(rf"\1{REDACTED}", message)
    )


def _identifier_problems(root: etree._Element, source: str) -> list[Problem]:
    found = []
    for element in root.iter(_NS_PREFIX + "Identifier"):
        value = (element.text or "").strip()
        scheme = element.get("scheme", "")
        if scheme not in _SCHEMES:
            continue  # the XSD has already reported the unknown scheme
        problem = identifier_problem(scheme, value, element.get("system"))
        if problem is not None:
            redacted = problem.replace(value, REDACTED) if value else problem
            found.append(Problem(source, _line(element), "Identifier", problem, redacted))
    return found


def _outcome_problems(root: etree._Element, source: str) -> list[Problem]:
    text = "an nfa outcome must give AdviceAndSignposting"
    return [
        Problem(source, _line(outcome), "Outcome", text, text)
        for outcome in root.iter(_NS_PREFIX + "Outcome")
        if outcome.get("code") == "nfa"
        and outcome.find(_NS_PREFIX + "AdviceAndSignposting") is None
    ]


def problems(root: etree._Element, source: str, expected_root: str | None = None) -> list[Problem]:
    """Every problem with an already safely parsed document; empty when it is valid."""
    kind = message_type(root, source)
    if expected_root is not None and kind != expected_root:
        text = f"expected a {expected_root}, found a {kind}"
        return [Problem(source, _line(root), kind, text, text)]
    schema = _compiled(MESSAGE_TYPES[kind])
    found = []
    if not schema.validate(root):
        found = [
            _xsd_problem(entry, source)
            for entry in cast("Iterable[etree._LogEntry]", schema.error_log)
        ]
    found += _identifier_problems(root, source)
    if kind == "Decision":
        found += _outcome_problems(root, source)
    return sorted(found, key=lambda p: p.line or 0)


def validate(data: bytes, source: str, expected_root: str | None = None) -> etree._Element:
    """Parse ``data`` safely and check it against its schema; return the root element.

    Raises gateway.core.xmlsafe.UnsafeXmlError for documents that are not
    well-formed or break a safety limit, and SchemaViolation for the rest.
    """
    root = xmlsafe.parse(data, source)
    found = problems(root, source, expected_root)
    if found:
        raise SchemaViolation(found)
    return root


_CHECKED = object()  # private to this module: only checked() passes it


@dataclass(frozen=True)
class CheckedDocument:
    """A payload's exact bytes that passed ``checked``, with their root element and type.

    Why: a caller that must check a document anyway (the e-mail intake does, to
    answer the sender in the SMTP reply) hands this to ``Edge.submit``, which then
    trusts it instead of parsing and checking the same bytes a second time. Only
    ``checked`` makes one: the constructor wants a token private to this module,
    and ``dataclasses.replace`` cannot copy it (an InitVar without a default), so
    holding one means ``xml`` passed its schema. ``root`` is the tree parsed from
    ``xml``, shared and not copied: read it, never modify it. Whoever seals the
    document seals ``xml``, never a re-serialised ``root``.
    """

    xml: bytes = field(repr=False)  # a repr never shows the document's content
    root: etree._Element = field(repr=False, compare=False)
    message_type: str
    token: InitVar[object]

    def __post_init__(self, token: object) -> None:
        if token is not _CHECKED:
            raise TypeError("a CheckedDocument is made only by gateway.core.schemas.checked")


def checked(data: bytes, source: str, expected_root: str | None = None) -> CheckedDocument:
    """``validate``, keeping the bytes, the root and the message type together."""
    root = validate(data, source, expected_root)
    return CheckedDocument(data, root, message_type(root, source), _CHECKED)
