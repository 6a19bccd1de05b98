"""Who may send each message type, and in reply to what: one table, which routing consults.

Pure. ``RULES`` has one row per message type of common.xsd's MessageType.
What the table says, in words:
- Every reply counts only from a recipient of the message it refers to, and
  in that message's case: an agency can answer only what it was sent. A
  response, a receipt or a negative receipt from anyone else is refused
  (check ``reply``) and changes nothing about the message it names: not its
  state, not its deadlines.
- A reply must name a message the gateway routed; a type that refers to
  nothing (a Referral opens a case) may not name one.
- A notice never answers a notice: a receipt refers to a business message
  only, and so does a NonDelivery or an Escalation, which only the gateway
  issues, straight to inboxes, never through ingress.
- Sharing agreements still decide who may send a business message to whom;
  this table only says what a message may refer to and who may refer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.envelope import HeaderFields
from gateway.core.records import MessageRecord

REPLY_CHECK = "reply"  # the FailedCheck a refusal by this table names


class Sender(StrEnum):
    AGENCY = "agency"  # any registered agency but the gateway principal
    GATEWAY = "gateway"  # the router only; refused on ingress


class Reference(StrEnum):
    """Whether a message of the type names a message it replies to (``in_reply_to``)."""

    NONE = "none"  # never
    MAY = "may"  # optional: e.g. an InformationResponse a partner shares unprompted
    MUST = "must"  # always: a receipt without its original means nothing


@dataclass(frozen=True)
class Rule:
    """One message type: who sends it, what it may refer to, and what a reply does."""

    sender: Sender
    reference: Reference
    refers_to: frozenset[str] = frozenset()  # the types its in_reply_to may name
    answers: frozenset[str] = frozenset()  # of those, the ones it answers (→ answered)
    to_original_sender: bool = False  # goes back to the referred message's sender only


BUSINESS = frozenset({"Referral", "InformationRequest", "InformationResponse", "Decision"})

RULES: Mapping[str, Rule] = {
    "Referral": Rule(Sender.AGENCY, Reference.NONE),
    "InformationRequest": Rule(
        Sender.AGENCY, Reference.MAY, frozenset({"Referral", "InformationResponse"})
    ),
    "InformationResponse": Rule(
        Sender.AGENCY,
        Reference.MAY,
        frozenset({"InformationRequest"}),
        answers=frozenset({"InformationRequest"}),
    ),
    "Decision": Rule(Sender.AGENCY, Reference.MAY, frozenset({"Referral"})),
    "DeliveryReceipt": Rule(Sender.AGENCY, Reference.MUST, BUSINESS, to_original_sender=True),
    "NonDelivery": Rule(Sender.GATEWAY, Reference.MUST, BUSINESS),
    "Escalation": Rule(Sender.GATEWAY, Reference.MUST, BUSINESS),
}


def rule(message_type: str) -> Rule:
    """The row for ``message_type``; an unknown type has none (the header schema refuses it)."""
    try:
        return RULES[message_type]
    except KeyError:
        raise LookupError(f"no reply rule for message type {message_type!r}") from None


def may_refer(message_type: str, referred_type: str) -> bool:
    """Whether a ``message_type`` may be sent in reply to a ``referred_type``."""
    return referred_type in rule(message_type).refers_to


def answers(message_type: str, referred_type: str) -> bool:
    """Whether a ``message_type`` in reply to a ``referred_type`` answers it."""
    return referred_type in rule(message_type).answers


def refusal(message: HeaderFields, original: MessageRecord | None) -> str | None:
    """Why an agency's ``message`` may not refer to what it names, or None when it may.

    ``original`` is the store's record of its ``in_reply_to`` (None when
    unknown). Who may send the type at all is checked before: the gateway's
    types never reach here from an agency.
    """
    message_type, sender, in_reply_to = message.message_type, message.sender, message.in_reply_to
    row = rule(message_type)
    if in_reply_to is None:
        if row.reference is Reference.MUST:
            return f"{message_type} must reply to a message the gateway routed"
        return None
    if row.reference is Reference.NONE:
        return f"{message_type} replies to nothing (it names {in_reply_to})"
    if original is None:
        return f"{in_reply_to}, which this {message_type} replies to, was never routed here"
    if original.message_type not in row.refers_to:
        return f"{message_type} may not reply to {original.message_type} {in_reply_to}"
    if sender not in original.recipients:
        return f"{sender} replied to {in_reply_to} but was not its recipient"
    if message.correlation_id != original.correlation_id:
        return f"a reply to {in_reply_to} stays in its case {original.correlation_id}"
    if row.to_original_sender and message.recipients != (original.sender,):
        return f"{message_type} for {in_reply_to} goes to {original.sender} only"
    return None
