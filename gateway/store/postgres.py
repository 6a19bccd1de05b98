"""The PostgreSQL tracking store, for several routers sharing one store.

Same units of work and tests as SqliteStore. What PostgreSQL adds:
- Row locks instead of one writer: ``advance`` takes the message row
  ``FOR UPDATE``, so two routers applying events to one message serialise
  on that row only; claims and deadlines rely on primary keys with
  ``ON CONFLICT DO NOTHING``.
- ``fire_due`` selects due deadlines ``FOR UPDATE SKIP LOCKED`` and holds
  the transaction while the escalator publishes, so a deadline is fired by
  one router at a time; if that router dies, its connection drops, the
  locks go with it, and another router fires the deadline (with the same
  escalation ids, which edges hand over once).
- Migrations run under a transaction-scoped advisory lock, so routers
  starting together migrate once.

The URL is asyncpg's: ``postgresql://user@host:port/db``; extra query
parameters are server settings, e.g. ``?search_path=mash`` for a schema.
Commits are durable with PostgreSQL's default ``synchronous_commit=on``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]

from gateway.core.records import Fire
from gateway.store import StoreError
from gateway.store.dialect import Dialect, T, Work, aware
from gateway.store.sql_store import Due, SqlStore, record_firings

Connection = Any  # asyncpg ships no type hints for its connection and records

POOL_SIZE = 4
# Taken for the migration transaction, so routers starting together migrate once.
MIGRATION_LOCK_KEY = 0x6D617368  # "mash"


POSTGRES = Dialect(
    instant="TIMESTAMPTZ",
    sequence_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    flag="BOOLEAN NOT NULL DEFAULT FALSE",
    blob="BYTEA",
    row_locks=True,
    migration_lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})",
)


def _as_is(value: datetime) -> datetime:
    """asyncpg returns timestamptz columns as aware UTC datetimes already."""
    return value


@functools.lru_cache(maxsize=1024)
def _numbered(text: str) -> str:
    """``text`` in POSTGRES, its ``?`` placeholders as asyncpg's $1, $2, ..."""
    head, *rest = POSTGRES.render(text).split("?")  # no statement has a ? inside a literal
    return head + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


class PostgresStore(SqlStore):
    """A TrackingStore in the PostgreSQL database ``url`` names."""

    def __init__(self, url: str) -> None:
        super().__init__(POSTGRES, url.split("@")[-1], _as_is)
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def _connect(self) -> bool:
        if self._pool is not None:
            return False
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=POOL_SIZE)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot open tracking store {self._where}: {exc}") from exc
        return True

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _transaction(self, what: str, work: Work[T]) -> T:
        async with self._connection(what) as conn, conn.transaction():
            return await _drive(conn, work)

    async def _query(self, what: str, work: Work[T]) -> T:
        async with self._connection(what) as conn:
            return await _drive(conn, work)

    async def _fire(self, due: Due, limit: int, fire: Fire) -> int:
        """Lock due rows with SKIP LOCKED, fire while holding them, record, commit."""
        async with self._connection("firing due deadlines") as conn, conn.transaction():
            found = await _drive(conn, due(limit))
            return await _drive(conn, record_firings(await fire(found))) if found else 0

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Connection]:
        if self._pool is None:
            raise StoreError(f"tracking store {self._where} is not open")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except asyncpg.PostgresError as exc:
            raise StoreError(f"tracking store {self._where}: {what} failed: {exc}") from exc


async def _drive(conn: Connection, work: Work[T]) -> T:
    """Run ``work`` to its end, awaiting each statement on ``conn``."""
    try:
        statement = next(work)
        while True:
            params = [aware(p) if isinstance(p, datetime) else p for p in statement.params]
            statement = work.send(await conn.fetch(_numbered(statement.sql), *params))
    except StopIteration as done:
        return cast(T, done.value)
