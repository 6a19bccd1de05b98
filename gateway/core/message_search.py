"""``mash-gateway messages``: which tracked messages a search selects, and its page cursor.

Pure. Pages are keyset pages, newest first: a page ends at a message
(created_at, message_id), and the next page is every match strictly before
it in that order. Unlike OFFSET, a page costs the same however deep it is
(an index range, never the skipped rows), and messages recorded meanwhile
neither shift nor repeat entries across pages.

The cursor is that last (created_at, message_id), base64url-encoded: opaque
to the user, checked when read back, holding only an id and a time.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from gateway.core.errors import GatewayError
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord

MAX_LIMIT = 1000
SEPARATOR = "|"


class BadCursor(GatewayError):
    """An --after value this command did not print."""


@dataclass(frozen=True)
class After:
    """Where the previous page ended: the next holds only messages strictly before this."""

    created_at: datetime
    message_id: str


@dataclass(frozen=True)
class MessageQuery:
    """Every filter is optional; all given must hold. ``start``/``end``: created in [start, end)."""

    correlation_id: str | None = None
    agency: str | None = None  # the sender or a recipient
    message_type: str | None = None
    state: State | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 50
    after: After | None = None


@dataclass(frozen=True)
class Page:
    messages: tuple[MessageRecord, ...]
    next: str | None  # the cursor of the next page; None on the last


def page_of(found: list[MessageRecord], limit: int) -> Page:
    """A page from up to ``limit + 1`` matches, newest first (one more says another page exists)."""
    shown = tuple(found[:limit])
    return Page(shown, cursor(shown[-1]) if len(found) > limit else None)


def cursor(last: MessageRecord) -> str:
    text = f"{last.created_at.isoformat()}{SEPARATOR}{last.message_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def read_cursor(text: str) -> After:
    """The position a cursor names; BadCursor for anything else."""
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, sep, message_id = decoded.partition(SEPARATOR)
        when = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(f"--after {text!r} is not a cursor `messages` printed") from None
    if not sep or not message_id or when.utcoffset() is None:
        raise BadCursor(f"--after {text!r} is not a cursor `messages` printed")
    return After(when, message_id)


def checked_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise GatewayError(f"--limit {limit}: give 1 to {MAX_LIMIT}")
    return limit
