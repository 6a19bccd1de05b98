"""Which inbox messages mean "a mail we accepted was not delivered", and why.

Pure: a delivered message's header facts and payload in, a Bounce or None
out. A NonDelivery (the router refused it) names the failed message, check
and reason in its payload; a negative DeliveryReceipt (the recipient's edge
refused it) carries the check in its signed header.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.notices import non_delivery_facts


@dataclass(frozen=True)
class Bounce:
    message_id: str  # the message the intake submitted
    check: str
    reason: str


def bounce_of(
    message_type: str,
    payload: bytes,
    in_reply_to: str | None,
    receipt_outcome: str | None,
    receipt_check: str | None,
) -> Bounce | None:
    if message_type == "NonDelivery":
        facts = non_delivery_facts(payload)
        return Bounce(
            facts.failed_message_id or (in_reply_to or "unknown"), facts.check, facts.reason
        )
    if message_type == "DeliveryReceipt" and receipt_outcome == "negative" and in_reply_to:
        return Bounce(
            in_reply_to,
            receipt_check or "unknown",
            "the recipient's system refused the message",
        )
    return None
