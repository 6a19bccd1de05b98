"""What the SQL of the two stores must differ in, and the unit of work both drivers run.

The store's logic is written once (``sql_store``) as units of work:
generators that yield a ``Statement`` and are sent back its rows. A driver
runs a unit to the end in its own way: SQLite's on its one worker thread in
one hop, PostgreSQL's by awaiting each statement on a pooled connection.
The SQL is written once too, with ``?`` placeholders and a few
``{fragment}``s; a ``Dialect`` fills those in and binds the parameters.
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
    """The differences, as the ``{name}`` fragments statements use and two conversions."""

    instant: str  # column type of a UTC timestamp
    sequence_key: str  # an increasing integer primary key
    flag: str  # a boolean column that defaults to false
    for_update: str  # locks selected rows until the transaction ends, where rows can be locked
    skip_locked: str  # the same, passing over rows another transaction holds
    migration_lock: tuple[str, ...]  # statements that make concurrent migrations wait
    numbered: bool  # placeholders $1, $2, ... instead of ?
    bind: Callable[[object], object]  # a parameter as the database takes it
    read_instant: ReadInstant  # a timestamp column as it comes back

    def prepare(self, statement: Statement) -> tuple[str, tuple[object, ...]]:
        return _render(self, statement.sql), tuple(map(self.bind, statement.params))


@functools.lru_cache(maxsize=1024)
def _render(dialect: Dialect, text: str) -> str:
    """``text`` in ``dialect``; the statements are constants, so each is rendered once."""
    filled = text.format(
        instant=dialect.instant,
        sequence_key=dialect.sequence_key,
        flag=dialect.flag,
        for_update=dialect.for_update,
        skip_locked=dialect.skip_locked,
    )
    if not dialect.numbered:
        return filled
    head, *rest = filled.split("?")  # no statement has a ? inside a literal
    return head + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


def aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise StoreError(f"timestamp {at.isoformat()} has no timezone; pass an aware UTC datetime")
    return at
