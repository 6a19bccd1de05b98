"""Header facts a payload already states: purpose, lawful bases, RAG and response deadline.

Pure. An InformationRequest carries its own purpose, lawful bases, RAG and
due time; the clear header must say the same, or the router would judge one
share while the recipient reads another. So the edge takes these from the
payload, and refuses a caller who states something different.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from gateway.core.errors import GatewayError
from gateway.core.schemas import NAMESPACE

_NS = f"{{{NAMESPACE}}}"


class HeaderPayloadMismatch(GatewayError):
    """What the sender states for the header contradicts what the payload says."""


@dataclass(frozen=True)
class PayloadFacts:
    purpose: str | None
    lawful_bases: tuple[str, ...]
    rag: str | None
    deadline: datetime | None


def payload_facts(root: etree._Element) -> PayloadFacts:
    """The header-relevant statements at the top level of a validated payload."""
    purpose = root.findtext(f"{_NS}Purpose")
    rag = root.findtext(f"{_NS}Rag")
    due = root.findtext(f"{_NS}ResponseDue")
    return PayloadFacts(
        purpose=purpose,
        lawful_bases=tuple(e.text or "" for e in root.findall(f"{_NS}LawfulBasis")),
        rag=rag,
        # The schema collapses the whitespace around a dateTime; fromisoformat does not.
        deadline=datetime.fromisoformat(due.strip().replace("Z", "+00:00")) if due else None,
    )


def merge(name: str, stated: str | None, in_payload: str | None) -> str | None:
    """The payload's value, or the stated one; both present and different is refused."""
    if stated is not None and in_payload is not None and stated != in_payload:
        raise HeaderPayloadMismatch(f"{name} {stated!r} differs from the payload's {in_payload!r}")
    return in_payload if in_payload is not None else stated


@dataclass(frozen=True)
class HeaderFacts:
    """The settled header values: a purpose and at least one lawful basis are certain."""

    purpose: str
    lawful_bases: tuple[str, ...]
    rag: str | None
    deadline: datetime | None


def header_facts(payload: PayloadFacts, stated: PayloadFacts, source: str) -> HeaderFacts:
    """What the header will say: the payload's facts, completed by what the sender stated.

    Refuses a contradiction, and a share with no purpose or no lawful basis.
    """
    if (
        stated.lawful_bases
        and payload.lawful_bases
        and (set(stated.lawful_bases) != set(payload.lawful_bases))
    ):
        raise HeaderPayloadMismatch(
            f"lawful bases {', '.join(stated.lawful_bases)} differ from the payload's "
            f"{', '.join(payload.lawful_bases)}"
        )
    purpose = merge("purpose", stated.purpose, payload.purpose)
    lawful_bases = payload.lawful_bases or stated.lawful_bases
    if purpose is None or not lawful_bases:
        raise HeaderPayloadMismatch(f"{source}: state a purpose and at least one lawful basis")
    return HeaderFacts(
        purpose=purpose,
        lawful_bases=lawful_bases,
        rag=merge("RAG", stated.rag, payload.rag),
        deadline=payload.deadline or stated.deadline,
    )
