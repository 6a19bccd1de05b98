"""The XML of the gateway's own messages: DeliveryReceipt, NonDelivery and Escalation payloads.

Pure: values in, canonical XML bytes out (valid against their schemas), and
a NonDelivery's facts read back for the edges that act on one. Reasons
carried here name checks and ids, never personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from gateway.core import xmlsafe
from gateway.core.deadlines import EscalationContact
from gateway.core.schemas import NAMESPACE

SCHEMA_VERSION = "1.0"


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _root(name: str) -> etree._Element:
    nsmap: dict[str | None, str] = {None: NAMESPACE}
    root = etree.Element(_q(name), nsmap=nsmap)  # type: ignore[arg-type]
    root.set("schemaVersion", SCHEMA_VERSION)
    return root


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, _q(name))
    if text is not None:
        child.text = text
    return child


def _bytes(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def non_delivery(
    failed_message_id: str,
    intended_recipient: str | None,
    check: str,
    reason: str,
    detected_at: datetime,
) -> bytes:
    root = _root("NonDelivery")
    _add(root, "FailedMessageId", failed_message_id)
    if intended_recipient is not None:
        _add(root, "IntendedRecipient", intended_recipient)
    _add(root, "FailedCheck", check)
    _add(root, "Reason", reason)
    _add(root, "DetectedAt", _instant(detected_at))
    return _bytes(root)


@dataclass(frozen=True)
class NonDeliveryFacts:
    """What a NonDelivery says: which message the exchange refused, the check, and why."""

    failed_message_id: str | None
    check: str
    reason: str


def non_delivery_facts(payload: bytes) -> NonDeliveryFacts:
    """Read a NonDelivery payload (as an edge delivers it: already schema-checked)."""
    root = xmlsafe.parse(payload, "NonDelivery")
    ns = {"m": NAMESPACE}
    return NonDeliveryFacts(
        root.findtext("m:FailedMessageId", namespaces=ns),
        root.findtext("m:FailedCheck", namespaces=ns) or "unknown",
        root.findtext("m:Reason", namespaces=ns) or "refused by the exchange",
    )


def _receipt(
    message_id: str, recipient: str, received_at: datetime, outcome: str, ciphertext_sha256: str
) -> tuple[etree._Element, etree._Element, etree._Element]:
    """What both receipts start with: the root, the outcome element and its evidence."""
    root = _root("DeliveryReceipt")
    _add(root, "ReceiptedMessageId", message_id)
    _add(root, "Recipient", recipient)
    _add(root, "ReceivedAt", _instant(received_at))
    verdict = _add(root, outcome)
    nri = _add(verdict, "NonRepudiationInformation")
    _add(nri, "CiphertextSha256", ciphertext_sha256)
    return root, verdict, nri


def positive_receipt(
    message_id: str,
    recipient: str,
    received_at: datetime,
    ciphertext_sha256: str,
    plaintext_sha256: str,
    handed_over_at: datetime,
) -> bytes:
    root, positive, nri = _receipt(
        message_id, recipient, received_at, "Positive", ciphertext_sha256
    )
    _add(nri, "PlaintextSha256", plaintext_sha256)
    _add(positive, "HandedOverAt", _instant(handed_over_at))
    return _bytes(root)


def negative_receipt(
    message_id: str,
    recipient: str,
    received_at: datetime,
    ciphertext_sha256: str,
    check: str,
    reason: str,
) -> bytes:
    root, negative, _ = _receipt(message_id, recipient, received_at, "Negative", ciphertext_sha256)
    _add(negative, "FailedCheck", check)
    _add(negative, "Reason", reason)
    return _bytes(root)


def escalation(
    concerns_message_id: str,
    correlation_id: str,
    deadline_kind: str,
    level: int,
    rag: str | None,
    due_at: datetime,
    escalated_at: datetime,
    silent_agency: str,
    contacts: Sequence[EscalationContact],
) -> bytes:
    root = _root("Escalation")
    _add(root, "ConcernsMessageId", concerns_message_id)
    _add(root, "CorrelationId", correlation_id)
    _add(root, "DeadlineKind", deadline_kind)
    _add(root, "Level", str(level))
    if rag is not None:
        _add(root, "Rag", rag)
    _add(root, "DueAt", _instant(due_at))
    _add(root, "EscalatedAt", _instant(escalated_at))
    _add(root, "SilentAgency", silent_agency)
    listed = _add(root, "Contacts")
    for contact in contacts:
        entry = _add(listed, "Contact")
        if contact.name is not None:
            _add(entry, "Name", contact.name)
        _add(entry, "Role", contact.role)
        _add(entry, "Agency", contact.agency)
        details = _add(entry, "Contact")
        if contact.phone is not None:
            _add(details, "Phone", contact.phone)
        if contact.email is not None:
            _add(details, "Email", contact.email)
    return _bytes(root)
