"""A reminder or escalation for an e-mail-only agency, as the text of a mail.

Pure: the Escalation payload (escalation.xsd) in, (subject, body) out. It
names the overdue message, its case, the deadline and the people to call
(staff contacts from the escalation, never a subject of the case), so for
a `pgp` agency the caller sends it encrypted.
"""

from __future__ import annotations

from gateway.core import xmlsafe
from gateway.core.schemas import NAMESPACE

NS = {"m": NAMESPACE}
LEVELS = {"1": "Reminder", "2": "Escalation"}


def reminder_mail(payload: bytes, agency: str) -> tuple[str, str]:
    root = xmlsafe.parse(payload, "Escalation")
    text = {
        name: root.findtext(f"m:{name}", namespaces=NS) or ""
        for name in ("ConcernsMessageId", "CorrelationId", "DeadlineKind", "Level", "DueAt", "Rag")
    }
    kind = LEVELS.get(text["Level"], "Escalation")
    lines = [
        f"{kind} (level {text['Level']}): {agency} has not yet met a {text['DeadlineKind']} "
        f"deadline.",
        "",
        f"Message id: {text['ConcernsMessageId']}",
        f"Case: {text['CorrelationId']}",
        f"Due at: {text['DueAt']}",
    ]
    if text["Rag"]:
        lines.append(f"RAG: {text['Rag']}")
    contacts = root.findall("m:Contacts/m:Contact", NS)
    if contacts:
        lines += ["", "Contacts:"]
    for contact in contacts:
        parts = [
            contact.findtext(f"m:{name}", namespaces=NS) for name in ("Name", "Role", "Agency")
        ]
        reach = [
            contact.findtext(f"m:Contact/m:{name}", namespaces=NS) for name in ("Phone", "Email")
        ]
        lines.append("- " + ", ".join(p for p in parts + reach if p))
    lines += [
        "",
        "If this is an information request, answer by replying to the request mail.",
    ]
    subject = f"{kind}: {text['DeadlineKind']} deadline for {text['ConcernsMessageId']}"
    return subject, "\r\n".join(lines) + "\r\n"
