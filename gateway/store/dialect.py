"""What the SQL of the two stores must differ in, and the unit of work both drivers run.

The store's logic is written once (``sql_store``) as units of work:
generators that yield a ``Statement`` and are sent back its rows. A driver
runs a unit to the end in its own way: SQLite's on its one worker thread in
one hop, PostgreSQL's by awaiting each statement on a pooled connection.

The SQL is written once too, with ``?`` placeholders and a few
``{fragment}``s that a ``Dialect`` fills in. What is the database library's
business, not SQL's, stays in each driver: its placeholder style, and how
a timestamp is bound and read back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from gateway.store import StoreError

T = TypeVar("T")
Row = Sequence[Any]
ReadInstant = Callable[[Any], datetime]


@dataclass(frozen=True)
class Statement:
    """One SQL statement, ``?`` for each parameter; user text only ever travels in ``params``."""

    sql: str
    params: tuple[object, ...] = ()


# A unit of work: yields statements, is sent each one's rows, returns its result.
Work = Generator[Statement, list[Row], T]


def sql(text: str, *params: object) -> Statement:
    return Statement(text, params)


@dataclass(frozen=True)
class Dialect:
    """The differences in the SQL text, as the ``{name}`` fragments statements use."""

    instant: str  # column type of a UTC timestamp
    sequence_key: str  # an increasing integer primary key
    flag: str  # a boolean column that defaults to false
    blob: str  # a column of bytes
    row_locks: bool  # {for_update} locks selected rows, {skip_locked} passes over locked ones
    migration_lock: str | None  # a statement that makes concurrent migrations wait their turn

    def render(self, text: str) -> str:
        return _render(self, text)


@functools.lru_cache(maxsize=1024)
def _render(dialect: Dialect, text: str) -> str:
    """The statements are constants, so each is rendered once."""
    return text.format(
        instant=dialect.instant,
        sequence_key=dialect.sequence_key,
        flag=dialect.flag,
        blob=dialect.blob,
        for_update=" FOR UPDATE" if dialect.row_locks else "",
        skip_locked=" FOR UPDATE SKIP LOCKED" if dialect.row_locks else "",
    )


def aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError(f"timestamp {at.isoformat()} has no timezone; pass an aware UTC datetime")
    return at
