"""`mash-gateway messages` (and `track --json`) as text or JSON: header facts and states only.

Pure. A message record holds ids, agencies, its type, RAG, times and its
state; the store has no payload to show.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.core.message_search import Page
from gateway.core.records import MessageRecord
from gateway.views.overdue import table
from gateway.views.timeline import printable, timestamp

HEADINGS = ("CREATED", "STATE", "TYPE", "FROM", "TO", "CASE", "MESSAGE")


def message_dict(message: MessageRecord) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "in_reply_to": message.in_reply_to,
        "message_type": message.message_type,
        "sender": message.sender,
        "recipients": list(message.recipients),
        "rag": message.rag,
        "deadline": message.deadline.isoformat() if message.deadline else None,
        "created_at": message.created_at.isoformat(),
        "state": message.state.value,
    }


def page_text(page: Page) -> str:
    if not page.messages:
        return "no messages match"
    rows = [
        HEADINGS,
        *(
            (
                timestamp(m.created_at),
                m.state.value,
                printable(m.message_type),
                printable(m.sender),
                printable(",".join(m.recipients)),
                printable(m.correlation_id),
                printable(m.message_id),
            )
            for m in page.messages
        ),
    ]
    lines = table(rows)
    shown = f"{len(page.messages)} shown, newest first"
    lines.append(f"{shown}; next page: --after {page.next}" if page.next else f"{shown}; no more")
    return "\n".join(lines)


def page_json(page: Page) -> str:
    return json.dumps(
        {"messages": [message_dict(m) for m in page.messages], "next": page.next}, indent=2
    )
