"""The gateway's own messages: DeliveryReceipt, NonDelivery and Escalation headers and payloads.

Pure: values in; header values and canonical XML bytes out (valid against
their schemas), and a NonDelivery's facts read back for the edges that act on
one. Reasons carried here name checks and ids, never personal data.

Every notice travels under one purpose and one lawful basis: the gateway's
operations (SYSTEM_PURPOSE), as a task in the public interest (UK GDPR
6(1)(e)), since no sharing agreement governs a receipt, a NonDelivery or an
Escalation. ``notice_header`` is the one place that writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lxml import etree

from gateway.core import xmlsafe
from gateway.core.deadlines import EscalationContact
from gateway.core.envelope import HeaderFields
from gateway.core.schemas import NAMESPACE
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES, SYSTEM_PURPOSE

SCHEMA_VERSION = "1.0"
NOTICE_LAWFUL_BASES = ("uk-gdpr-6-1-e",)


class MessageIds(Protocol):
    """What a notice names of the message it is about: a header, claimed facts, a deadline."""

    @property
    def message_id(self) -> str: ...

    @property
    def correlation_id(self) -> str: ...


def notice_header(
    message_type: str,
    message_id: str,
    sender: str,
    recipients: tuple[str, ...],
    about: MessageIds,
    created_at: datetime,
    *,
    rag: str | None = None,
    receipt_outcome: str | None = None,
    receipt_check: str | None = None,
) -> HeaderFields:
    """The header of a notice about the message ``about``: in its case, in reply to it."""
    if message_type not in SYSTEM_MESSAGE_TYPES:
        raise ValueError(f"{message_type} is not a notice type")
    return HeaderFields(
        message_id=message_id,
        correlation_id=about.correlation_id,
        message_type=message_type,
        sender=sender,
        recipients=recipients,
        created_at=created_at,
        purpose=SYSTEM_PURPOSE,
        lawful_bases=NOTICE_LAWFUL_BASES,
        in_reply_to=about.message_id,
        rag=rag,
        receipt_outcome=receipt_outcome,
        receipt_check=receipt_check,
    )


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
    attachments: Sequence[tuple[str, str]] = (),
) -> bytes:
    """``attachments``: each file's (ciphertext, plaintext) SHA-256, in the message's order."""
    root, positive, nri = _receipt(
        message_id, recipient, received_at, "Positive", ciphertext_sha256
    )
    _add(nri, "PlaintextSha256", plaintext_sha256)
    for ciphertext, plaintext in attachments:
        digests = _add(nri, "AttachmentDigests")
        _add(digests, "CiphertextSha256", ciphertext)
        _add(digests, "PlaintextSha256", plaintext)
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
