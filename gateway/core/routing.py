"""The router's decision for one verified ingress message: deliver, forward a receipt, or reject.

Pure: the verified header, the registry, the agreements, the date and (for
replies) the original message's record in; a decision out. The router shell
has already verified the signature, the header schema, the timestamp window
and replay; this module decides who may receive what, and routing_plan what
follows from that.

Decisions written down here:
- a message with any recipient it may not reach is rejected whole, never
  partly delivered: the sender addressed one message and learns of one fate;
- edges may not send NonDelivery or Escalation, and nobody but the router may
  sign as the gateway principal;
- what a message may reply to, and who may reply, is reply_rules' one table:
  a reply (a response, a receipt, a negative receipt) counts only from a
  recipient of the message it names, in that message's case, and is refused
  whole (check ``reply``) otherwise, before any agreement is looked at;
- a DeliveryReceipt goes back to the original's sender only, and says in its
  signed header whether it is positive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from gateway.core import reply_rules, sharing
from gateway.core.envelope import HeaderFields
from gateway.core.records import MessageRecord
from gateway.core.registry import Registry
from gateway.core.vocabulary import SYSTEM_PURPOSE

RECEIPT = "DeliveryReceipt"


@dataclass(frozen=True)
class Deliver:
    recipients: tuple[str, ...]
    agreement_ids: tuple[str, ...]
    answers: str | None = None  # the InformationRequest this message answers


@dataclass(frozen=True)
class ForwardReceipt:
    original_id: str
    to: str
    positive: bool


@dataclass(frozen=True)
class Reject:
    check: str  # one of common.xsd's FailedCheck values
    reason: str


RoutingDecision = Deliver | ForwardReceipt | Reject


def route(
    facts: HeaderFields,
    registry: Registry,
    agreements: Iterable[sharing.Agreement],
    gateway: str,
    on: date,
    original: MessageRecord | None,
) -> RoutingDecision:
    """Decide what happens to ``facts``; ``original`` is the record of ``in_reply_to``, if any.

    ``facts`` is the verified header: what the router may know of a message,
    never its payload.
    """
    if facts.sender == gateway:
        return Reject("unknown-sender", "only the router itself signs as the gateway")
    if reply_rules.rule(facts.message_type).sender is reply_rules.Sender.GATEWAY:
        return Reject("policy", f"only the gateway issues {facts.message_type}")
    unknown = next(
        (r for r in facts.recipients if r not in registry.agencies or r == gateway), None
    )
    if unknown is not None:
        return Reject("unknown-recipient", f"recipient {unknown!r} is not a registered agency")
    if facts.sender in facts.recipients:
        return Reject("policy", f"{facts.sender} addressed a message to itself")
    refused = reply_rules.refusal(facts, original)
    if refused is not None:
        return Reject(reply_rules.REPLY_CHECK, refused)
    if facts.message_type == RECEIPT and original is not None:  # the table: a receipt has one
        return _receipt(facts, original)
    if facts.purpose == SYSTEM_PURPOSE:
        return Reject(
            "policy", f"purpose {SYSTEM_PURPOSE} is for receipts and gateway notices only"
        )
    agreement_ids = []
    for recipient in facts.recipients:
        decision = sharing.decide(
            agreements,
            facts.sender,
            recipient,
            facts.message_type,
            facts.purpose,
            facts.lawful_bases,
            on,
        )
        if isinstance(decision, sharing.Denied):
            return Reject("policy", decision.reason)
        agreement_ids.append(decision.agreement_id)
    answered = (
        original.message_id
        if original is not None and reply_rules.answers(facts.message_type, original.message_type)
        else None
    )
    return Deliver(facts.recipients, tuple(dict.fromkeys(agreement_ids)), answered)


def _receipt(facts: HeaderFields, original: MessageRecord) -> RoutingDecision:
    if facts.purpose != SYSTEM_PURPOSE:
        return Reject("policy", f"a receipt must have purpose {SYSTEM_PURPOSE}")
    if facts.receipt_outcome not in {"positive", "negative"}:
        return Reject("header-schema", "a receipt header must say whether it is positive")
    return ForwardReceipt(original.message_id, original.sender, facts.receipt_outcome == "positive")
