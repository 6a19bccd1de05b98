"""`mash-gateway quarantine` as text or JSON: header facts, the failed check, never the payload.

Pure. An entry holds the sealed envelope, which nothing here reads: these
views show ids, agencies, types, checks, reasons, sizes, times and who did
what. The console renders the same ``entry_dict``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.core.lifecycle import State
from gateway.core.quarantine import Entry
from gateway.views.overdue import table
from gateway.views.timeline import printable, timestamp

LIST_HEADINGS = ("ENTRY", "QUARANTINED", "CHECK", "TYPE", "FROM", "TO", "MESSAGE")


def entry_dict(entry: Entry, state: State | None = None) -> dict[str, Any]:
    """Everything shown of an entry, as plain values."""
    f, c = entry.facts, entry.cause
    shown: dict[str, Any] = {
        "entry_id": entry.entry_id,
        "message_id": f.message_id,
        "correlation_id": f.correlation_id,
        "message_type": f.message_type,
        "sender": f.sender,
        "recipients": list(f.recipients),
        "created_at": f.created_at.isoformat() if f.created_at else None,
        "check": c.check,
        "reason": c.reason,
        "source": c.source,
        "quarantined_at": entry.quarantined_at.isoformat(),
        "size": entry.size,
        "body_sha256": entry.body_sha256,
        "status": entry.status.value,
        "settled_at": entry.settled_at.isoformat() if entry.settled_at else None,
        "settled_by": entry.settled_by,
        "settle_reason": entry.settle_reason,
    }
    if state is not None:
        shown["tracked_state"] = state.value
    return shown


def list_text(entries: Sequence[Entry]) -> str:
    if not entries:
        return "nothing in quarantine matches"
    rows = [
        LIST_HEADINGS,
        *(
            (
                e.entry_id,
                timestamp(e.quarantined_at),
                printable(e.cause.check),
                printable(e.facts.message_type or "?"),
                printable(e.facts.sender or "?"),
                printable(",".join(e.facts.recipients) or "?"),
                printable(e.facts.message_id),
            )
            for e in entries
        ),
    ]
    return "\n".join([*table(rows), f"{len(entries)} shown"])


def list_json(entries: Sequence[Entry]) -> str:
    return json.dumps([entry_dict(e) for e in entries], indent=2)


def show_text(entry: Entry, state: State | None) -> str:
    """One entry's facts, labelled; the payload stays sealed and unshown."""
    f, c = entry.facts, entry.cause
    lines = [
        f"quarantine entry {entry.entry_id}: {entry.status.value}",
        f"  message        {printable(f.message_id)}",
        f"  case           {printable(f.correlation_id or '?')}",
        f"  type           {printable(f.message_type or '?')}",
        f"  from           {printable(f.sender or '?')}",
        f"  to             {printable(', '.join(f.recipients) or '?')}",
        f"  created        {timestamp(f.created_at) if f.created_at else '?'}",
        f"  failed check   {printable(c.check)}",
        f"  reason         {printable(c.reason)}",
        f"  quarantined    {timestamp(entry.quarantined_at)} by {printable(c.source)}",
        f"  size           {entry.size} bytes, sha256 {entry.body_sha256}",
        f"  tracked state  {state.value if state else 'not tracked (never verified)'}",
    ]
    if entry.settled_at is not None:
        why = f" ({printable(entry.settle_reason)})" if entry.settle_reason else ""
        lines.append(
            f"  {entry.status.value:<14} {timestamp(entry.settled_at)} by "
            f"{printable(entry.settled_by or '?')}{why}"
        )
    return "\n".join(lines)


def show_json(entry: Entry, state: State | None) -> str:
    return json.dumps(entry_dict(entry, state), indent=2)
