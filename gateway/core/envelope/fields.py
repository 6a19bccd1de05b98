"""What the sender states about a message: the clear metadata the router routes on.

These fields travel unencrypted, so they must never hold personal data; the
XSD's patterns (UUIDs, agency ids, controlled lists) enforce that shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HeaderFields:
    message_id: str
    correlation_id: str
    message_type: str
    sender: str
    recipients: tuple[str, ...]
    created_at: datetime
    purpose: str
    lawful_bases: tuple[str, ...]
    assurance: str = "edge-signed"
    in_reply_to: str | None = None
    rag: str | None = None
    deadline: datetime | None = None
    receipt_outcome: str | None = None  # DeliveryReceipt only: "positive" or "negative"
    receipt_check: str | None = None  # the FailedCheck a negative receipt names
