"""Text views of what the store knows: timelines, overdue lists, reports.

Pure like the core (records in, text out), and may import only the core.
"""

__all__ = [
    "messages",
    "overdue",
    "quarantine",
    "report",
    "report_formats",
    "timeline",
    "track_json",
    "validity",
]
