"""What a container claims about itself when it fails verification.

Used only to address a rejection (a NonDelivery or a negative receipt to the
claimed sender, a message id on the quarantined copy). Nothing here is
verified: never route, record state or trust anything on these values.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core import xmlsafe
from gateway.core.envelope.container import split_head
from gateway.core.envelope.envelope_error import EnvelopeError
from gateway.core.envelope.header import Header, parse_header
from gateway.core.envelope.protocol import NAMESPACE

_NS = f"{{{NAMESPACE}}}"


def claimed_header(container: bytes) -> Header | None:
    """The strictly parsed, unverified header, or None if there is no well-formed one."""
    try:
        return parse_header(split_head(container).header_bytes)
    except EnvelopeError:
        return None


@dataclass(frozen=True)
class ClaimedFacts:
    """Who a failed container says sent it; lenient, so a schema-invalid header still answers."""

    message_id: str
    correlation_id: str
    sender: str
    message_type: str


def claimed_facts(container: bytes) -> ClaimedFacts | None:
    """The addressing facts of a container's header, even one that fails its schema."""
    try:
        root = xmlsafe.parse(split_head(container).header_bytes, "claimed header")
    except (EnvelopeError, xmlsafe.UnsafeXmlError):
        return None
    sender = root.find(f"{_NS}Sender")
    found = ClaimedFacts(
        message_id=(root.findtext(f"{_NS}MessageId") or "").strip(),
        correlation_id=(root.findtext(f"{_NS}CorrelationId") or "").strip(),
        sender=(sender.get("agency", "") if sender is not None else "").strip(),
        message_type=(root.findtext(f"{_NS}MessageType") or "").strip(),
    )
    return found if found.message_id and found.sender else None
