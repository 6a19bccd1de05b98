"""A message's timeline, or a whole case's, as plain text for `mash-gateway track`.

Pure. It shows ids, types, agencies, states, times and reasons only: never a
payload, never a transition's ``detail`` (digests and ids meant for the
audit, not the screen). A message's files are shown as the signed header
states them (count, sealed size and SHA-256 each, matching the receipt),
never by name. Every field is printed through ``printable`` because
header values come from outside the gateway, and a control or bidi character
could rewrite what an operator sees on the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.core.deadline_rules import Deadline
from gateway.core.lifecycle import State
from gateway.core.records import DeadlineEvent, DeadlineEventEntry, MessageRecord, TimelineEntry

STATE_WIDTH = max(len(s.value) for s in State)
# Notices end at the router: no one receipts a receipt, a NonDelivery or an Escalation,
# so ``routed`` is their last state, shown as what it means for them.
NOTICE_ENDS = {"DeliveryReceipt": "forwarded", "NonDelivery": "sent", "Escalation": "sent"}
TIME_WIDTH = len("2026-01-01T00:00:00.000Z")
REPLACEMENT = "?"


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, escape, bidi control) replaced."""
    return "".join(c if c.isprintable() else REPLACEMENT for c in text)


def timestamp(at: datetime) -> str:
    """UTC to the millisecond: enough to order a message's hops, short enough to scan."""
    utc = at.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def route(message: MessageRecord) -> str:
    recipients = ", ".join(printable(r) for r in message.recipients)
    return f"{printable(message.sender)} -> {recipients}"


def transition_line(entry: TimelineEntry, indent: str = "") -> str:
    line = f"{indent}{timestamp(entry.at):<{TIME_WIDTH}}  {entry.state.value:<{STATE_WIDTH}}"
    if entry.reason:
        line += f"  {printable(entry.reason)}"
    return line.rstrip()


def message_view(message: MessageRecord, timeline: Sequence[TimelineEntry]) -> str:
    """One message: its header facts, then every transition, oldest first."""
    lines = [
        _fact("message", printable(message.message_id)),
        _fact("type", printable(message.message_type)),
        _fact("route", route(message)),
        _fact("case", printable(message.correlation_id)),
    ]
    if message.in_reply_to:
        lines.append(_fact("reply to", printable(message.in_reply_to)))
    lines.append(_fact("state", message.state.value))
    if message.attachments:
        lines.append(_fact("files", files_summary(message)))
        lines.extend(
            f"  {n}  {a.ciphertext_length} bytes sealed  SHA-256 {printable(a.ciphertext_sha256)}"
            for n, a in enumerate(message.attachments, start=1)
        )
    lines.append("")
    lines.append(f"{'TIME':<{TIME_WIDTH}}  {'STATE':<{STATE_WIDTH}}  REASON")
    lines.extend(transition_line(e) for e in _oldest_first(timeline))
    return "\n".join(lines)


def case_view(
    correlation_id: str, messages: Sequence[MessageRecord], timeline: Sequence[TimelineEntry]
) -> str:
    """A case: each message (type, sender -> recipients, state), then its transitions.

    Messages come in the order given (the store's: oldest first); each
    message's transitions are oldest first.
    """
    by_message: dict[str, list[TimelineEntry]] = {m.message_id: [] for m in messages}
    for entry in _oldest_first(timeline):
        by_message.setdefault(entry.message_id, []).append(entry)
    count = len(messages)
    lines = [f"case {printable(correlation_id)}: {count} message{'' if count == 1 else 's'}"]
    for message in messages:
        lines.append("")
        head = (
            f"{printable(message.message_type)} {printable(message.message_id)}  "
            f"{route(message)}  [{shown_state(message)}]"
        )
        if message.in_reply_to:
            head += f"  reply to {printable(message.in_reply_to)}"
        if message.attachments:
            head += f"  files {files_summary(message)}"
        lines.append(head)
        lines.extend(transition_line(e, "  ") for e in by_message[message.message_id])
    return "\n".join(lines)


def files_summary(message: MessageRecord) -> str:
    """How many files a message carries and their sealed size: e.g. ``2 (3145781 bytes)``."""
    total = sum(a.ciphertext_length for a in message.attachments)
    return f"{len(message.attachments)} ({total} bytes)"


def shown_state(message: MessageRecord) -> str:
    """The state a case line shows: a routed notice is as far as it goes."""
    if message.state is State.ROUTED and message.message_type in NOTICE_ENDS:
        return NOTICE_ENDS[message.message_type]
    return message.state.value


def deadline_status(
    deadline: Deadline, now: datetime, events: Sequence[DeadlineEventEntry] = ()
) -> str:
    """met, met late, ended (one of its ``events`` ended it), overdue or open: asked first."""
    if any(e.event is DeadlineEvent.ENDED for e in events):
        return "ended"
    if deadline.closed_at is not None:
        return "met late" if deadline.breached else "met"
    return "overdue" if deadline.due_at <= now else "open"


def deadlines_view(
    deadlines: Sequence[Deadline], events: Sequence[DeadlineEventEntry], now: datetime
) -> str:
    """The case's deadlines: who owes what by when, its status, and each escalation and closure."""
    by_deadline: dict[str, list[DeadlineEventEntry]] = {d.deadline_id: [] for d in deadlines}
    for event in events:
        by_deadline.setdefault(event.deadline_id, []).append(event)
    lines = ["deadlines:"]
    for deadline in deadlines:
        status = deadline_status(deadline, now, by_deadline[deadline.deadline_id])
        rag = f" {deadline.rag}" if deadline.rag else ""
        lines.append(
            f"  {deadline.kind.value}{rag} owed by {printable(deadline.debtor)} to "
            f"{printable(deadline.creditor)} for {printable(deadline.message_id)}: "
            f"due {timestamp(deadline.due_at)}  [{status}]"
        )
        for event in by_deadline[deadline.deadline_id]:
            what = event.event.value
            if event.level is not None:
                what += f" level {event.level}"
            if event.reason:
                what += f"  {printable(event.reason)}"
            lines.append(f"    {timestamp(event.at):<{TIME_WIDTH}}  {what}")
    return "\n".join(lines)


def _fact(label: str, value: str) -> str:
    return f"{label + ':':<10}{value}"


def _oldest_first(timeline: Sequence[TimelineEntry]) -> list[TimelineEntry]:
    """Stable: transitions at the same instant keep the store's (recording) order."""
    return sorted(timeline, key=lambda e: e.at)
