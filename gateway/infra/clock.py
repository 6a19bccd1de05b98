"""The shells' one source of the current time, so the pure core never reads a clock."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
