"""What a container claims about itself when it fails verification.

Used only to address a rejection (a NonDelivery or a negative receipt to the
claimed sender, a message id on the quarantined copy). Nothing here is
verified: never route, record state or trust anything on these values.
"""

from __future__ import annotations

from gateway.envelope.container import split_head
from gateway.envelope.errors import EnvelopeError
from gateway.envelope.header import Header, parse_header


def claimed_header(container: bytes) -> Header | None:
    """The strictly parsed, unverified header, or None if there is no well-formed one."""
    try:
        return parse_header(split_head(container).header_bytes)
    except EnvelopeError:
        return None
