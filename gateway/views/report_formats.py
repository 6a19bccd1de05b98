"""`mash-gateway report` as a terminal table, CSV or JSON. Pure: a Report in, text out."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from gateway.views.overdue import table
from gateway.views.report import Report
from gateway.views.timeline import timestamp


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def sections(report: Report) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Each section's column names and rows, shared by every format."""
    found: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
        "volumes": (
            ("message_type", "agency", "sent", "received"),
            [(v.message_type, v.agency, v.sent, v.received) for v in report.volumes],
        ),
        "timeliness": (
            ("agency", "kind", "rag", "owed", "on_time", "late", "overdue",
             "median_hours", "p90_hours"),
            [
                (t.agency, t.kind, t.rag or "-", t.owed, t.on_time, t.late, t.overdue,
                 _hours(t.median_hours), _hours(t.p90_hours))
                for t in report.timeliness
            ],
        ),
        "breaches_by_rag": (("rag", "breached"), list(report.breaches_by_rag.items())),
        "delivery_failures": (
            ("check", "sender", "count"),
            [(f.check, f.sender, f.count) for f in report.failures],
        ),
    }  # fmt: skip
    if report.repeats is not None:
        r = report.repeats
        found["repeat_referrals"] = (
            ("days", "referrals", "repeat_referrals", "subjects_referred_again"),
            [(r.days, r.referrals, r.repeat_referrals, r.subjects_referred_again)],
        )
    return found


def text(report: Report) -> str:
    lines = [f"report {timestamp(report.start)} to {timestamp(report.end)}"]
    for name, (columns, rows) in sections(report).items():
        lines += ["", name.replace("_", " ") + ":"]
        if not rows:
            lines.append("  none")
            continue
        cells = [tuple(c.upper() for c in columns), *(tuple(str(v) for v in r) for r in rows)]
        lines += ["  " + line for line in table(cells)]
    return "\n".join(lines)


def as_csv(report: Report) -> str:
    """One CSV: a ``section`` column, then that section's columns (blank where not its own)."""
    all_sections = sections(report)
    columns: list[str] = []
    for names, _ in all_sections.values():
        columns += [c for c in names if c not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", *columns])
    for name, (names, rows) in all_sections.items():
        for row in rows:
            values = dict(zip(names, row, strict=True))
            writer.writerow([name, *(values.get(c, "") for c in columns)])
    return out.getvalue()


def as_json(report: Report) -> str:
    return json.dumps(
        {
            "from": report.start.isoformat(),
            "to": report.end.isoformat(),
            **{
                name: [dict(zip(names, row, strict=True)) for row in rows]
                for name, (names, rows) in sections(report).items()
            },
        },
        indent=2,
    )


def render(report: Report, form: str) -> str:
    renderers = {"text": text, "csv": as_csv, "json": as_json}
    return renderers[form](report)
