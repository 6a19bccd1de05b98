"""`mash-gateway overdue` as text or JSON: deadlines by agency, kind and RAG, counts and ids only.

Pure. No names, no payloads: the store holds none, and the table shows
agencies, kinds, RAG ratings, counts, due times, levels and ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from gateway.core.deadline_rules import Deadline
from gateway.core.records import DeadlineCount
from gateway.views.timeline import printable, timestamp

COUNT_HEADINGS = ("AGENCY", "KIND", "RAG", "OPEN", "OVERDUE", "BREACHED")
OVERDUE_HEADINGS = ("DUE", "AGENCY", "KIND", "RAG", "LEVEL", "MESSAGE", "CASE")


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def text(counts: Sequence[DeadlineCount], overdue: Sequence[Deadline], now: datetime) -> str:
    lines = [f"deadlines at {timestamp(now)}"]
    if not counts:
        return "\n".join([*lines, "no deadlines recorded"])
    lines += table(
        [
            COUNT_HEADINGS,
            *(
                (
                    printable(c.agency),
                    c.kind,
                    c.rag or "-",
                    str(c.open),
                    str(c.overdue),
                    str(c.breached),
                )
                for c in counts
            ),
        ]
    )
    lines.append("")
    if not overdue:
        lines.append("nothing overdue")
        return "\n".join(lines)
    lines.append(f"overdue now, most overdue first ({len(overdue)} shown):")
    lines += table(
        [
            OVERDUE_HEADINGS,
            *(
                (
                    timestamp(d.due_at),
                    printable(d.debtor),
                    d.kind.value,
                    d.rag or "-",
                    str(d.level),
                    printable(d.message_id),
                    printable(d.correlation_id),
                )
                for d in overdue
            ),
        ]
    )
    return "\n".join(lines)


def as_json(counts: Sequence[DeadlineCount], overdue: Sequence[Deadline], now: datetime) -> str:
    return json.dumps(
        {
            "at": now.isoformat(),
            "counts": [
                {
                    "agency": c.agency,
                    "kind": c.kind,
                    "rag": c.rag,
                    "open": c.open,
                    "overdue": c.overdue,
                    "breached": c.breached,
                }
                for c in counts
            ],
            "overdue": [
                {
                    "deadline_id": d.deadline_id,
                    "agency": d.debtor,
                    "kind": d.kind.value,
                    "rag": d.rag,
                    "due_at": d.due_at.isoformat(),
                    "level": d.level,
                    "message_id": d.message_id,
                    "correlation_id": d.correlation_id,
                }
                for d in overdue
            ],
        },
        indent=2,
    )
