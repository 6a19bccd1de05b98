"""Information sharing agreements as data, and the deny-by-default decision over them.

Pure: agreements, the header facts and the day come in; a Decision comes out.

A share is allowed only when one agreement, valid on the day, lists the
sender, the recipient, the message type and the purpose, and allows every
lawful basis the header cites. Otherwise it is denied, and the reason names
the check that failed on the agreement that came nearest, so the sender's
NonDelivery says what to fix.

Not decided here:
- System messages (DeliveryReceipt, NonDelivery, Escalation with purpose
  gateway-operations) carry no case content and are governed by no
  agreement; the router checks them (``routing``). Config refuses
  agreements that list them, so ``decide`` would deny them.
- Payload rules. The router cannot read payloads, so a rule about content,
  such as ``upn_allowed``, is enforced by the edges that seal and open them
  (``upn_refusal`` over the parsed payload).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from lxml import etree

from gateway.core.registry import Registry
from gateway.core.schemas import NAMESPACE

IDENTIFIER = f"{{{NAMESPACE}}}Identifier"


@dataclass(frozen=True)
class Agreement:
    id: str
    senders: frozenset[str]
    recipients: frozenset[str]
    message_types: frozenset[str]
    purposes: frozenset[str]
    lawful_bases: frozenset[str]
    valid_from: date
    valid_until: date  # inclusive last day


@dataclass(frozen=True)
class Allowed:
    agreement_id: str


@dataclass(frozen=True)
class Denied:
    reason: str


Decision = Allowed | Denied


def decide(
    agreements: Iterable[Agreement],
    sender: str,
    recipient: str,
    message_type: str,
    purpose: str,
    lawful_bases: tuple[str, ...],
    on: date,
) -> Decision:
    """Allowed by the first agreement (by id) that permits this share on ``on``, else Denied."""
    if not lawful_bases:
        return Denied(f"{sender} cited no lawful basis for sending {message_type} to {recipient}")
    parties = sorted(
        (
            a
            for a in agreements
            if sender in a.senders and recipient in a.recipients and message_type in a.message_types
        ),
        key=lambda a: a.id,
    )
    if not parties:
        return Denied(f"no agreement lets {sender} send {message_type} to {recipient}")
    failures = [(a, _failures(a, purpose, lawful_bases, on)) for a in parties]
    for agreement, failed in failures:
        if not failed:
            return Allowed(agreement.id)
    _, nearest = min(failures, key=lambda pair: len(pair[1]))
    return Denied(nearest[0])


def _failures(a: Agreement, purpose: str, lawful_bases: tuple[str, ...], on: date) -> list[str]:
    """Every check ``a`` fails, purpose first, then lawful basis, then dates."""
    failed = []
    if purpose not in a.purposes:
        failed.append(f"agreement {a.id} does not allow purpose {purpose}")
    refused = [b for b in dict.fromkeys(lawful_bases) if b not in a.lawful_bases]
    if refused:
        noun = "lawful basis" if len(refused) == 1 else "lawful bases"
        failed.append(f"agreement {a.id} does not allow {noun} {', '.join(refused)}")
    if on < a.valid_from:
        failed.append(f"agreement {a.id} is not valid until {a.valid_from.isoformat()}")
    if on > a.valid_until:
        failed.append(f"agreement {a.id} expired on {a.valid_until.isoformat()}")
    return failed


EDUCATION = "education"


def upn_allowed(sender_kind: str, recipient_kind: str) -> bool:
    """Whether a Unique Pupil Number may travel from an agency of one kind to another.

    The UPN is for educational use only (DfE guidance, domain.md), so it may
    appear only in a flow where the sender or the recipient is an education
    agency. The kinds come from the registry. The router cannot see payloads,
    so the sealing edge refuses to seal, and the opening edge refuses (with a
    negative receipt), a payload carrying an identifier of scheme ``upn`` in
    a flow this denies.
    """
    return EDUCATION in (sender_kind, recipient_kind)


def upn_refusal(
    root: etree._Element, source: str, sender: str, recipients: Sequence[str], registry: Registry
) -> str | None:
    """Why this payload may not carry its UPN from ``sender`` to ``recipients``; None if it may.

    The reason names the source and line of the first UPN, and the agencies
    it may not reach; never the UPN itself.
    """
    upn = next((e for e in root.iter(IDENTIFIER) if e.get("scheme") == "upn"), None)
    if upn is None:
        return None
    sender_kind = registry.agency(sender).kind
    denied = [r for r in recipients if not upn_allowed(sender_kind, registry.agency(r).kind)]
    if not denied:
        return None
    return (
        f"{source}:{upn.sourceline}: Identifier: a UPN may travel only in education flows; "
        f"{sender} ({sender_kind}) may not send one to {', '.join(denied)}"
    )
