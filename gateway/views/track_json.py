"""`mash-gateway track --json`: a message's or a case's story as JSON, for scripts and the console.

Pure. The same facts as the text timeline (gateway/views/timeline.py): ids,
types, agencies, states, times, reasons and deadlines; never a payload.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway.core.deadline_rules import Deadline
from gateway.core.records import DeadlineEventEntry, MessageRecord, TimelineEntry
from gateway.views.messages import message_dict
from gateway.views.timeline import deadline_status


def _transition(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "message_id": entry.message_id,
        "state": entry.state.value,
        "at": entry.at.isoformat(),
        "reason": entry.reason,
        "detail": entry.detail,
    }


def _tracked(message: MessageRecord) -> dict[str, Any]:
    """A message's facts and its files as the signed header states them (no names)."""
    return {
        **message_dict(message),
        "attachments": [
            {"ciphertext_length": a.ciphertext_length, "ciphertext_sha256": a.ciphertext_sha256}
            for a in message.attachments
        ],
    }


def message_json(message: MessageRecord, timeline: Sequence[TimelineEntry]) -> str:
    return json.dumps(
        {**_tracked(message), "timeline": [_transition(e) for e in timeline]}, indent=2
    )


def case_json(
    correlation_id: str,
    messages: Sequence[MessageRecord],
    timeline: Sequence[TimelineEntry],
    deadlines: Sequence[Deadline],
    events: Sequence[DeadlineEventEntry],
    now: datetime,
) -> str:
    by_deadline: dict[str, list[DeadlineEventEntry]] = {d.deadline_id: [] for d in deadlines}
    for event in events:
        by_deadline.setdefault(event.deadline_id, []).append(event)
    return json.dumps(
        {
            "correlation_id": correlation_id,
            "messages": [
                {
                    **_tracked(m),
                    "timeline": [_transition(e) for e in timeline if e.message_id == m.message_id],
                }
                for m in messages
            ],
            "deadlines": [
                {
                    "deadline_id": d.deadline_id,
                    "message_id": d.message_id,
                    "kind": d.kind.value,
                    "owed_by": d.debtor,
                    "owed_to": d.creditor,
                    "rag": d.rag,
                    "started_at": d.started_at.isoformat(),
                    "due_at": d.due_at.isoformat(),
                    "level": d.level,
                    "status": deadline_status(d, now, by_deadline[d.deadline_id]),
                    "events": [
                        {
                            "at": e.at.isoformat(),
                            "event": e.event.value,
                            "level": e.level,
                            "message_id": e.message_id,
                            "reason": e.reason,
                        }
                        for e in by_deadline[d.deadline_id]
                    ],
                }
                for d in deadlines
            ],
        },
        indent=2,
    )
