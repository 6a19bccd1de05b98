"""One lock per case, so messages of a case are routed in arrival order while cases overlap.

The router verifies a message (CPU only, no awaits) before it asks for its
case's lock, so lock requests are made in delivery order, and asyncio locks
are granted first come, first served. A lock lives only while someone holds
or waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CaseLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, case: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(case, asyncio.Lock())
        self._users[case] = self._users.get(case, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[case] -= 1
            if not self._users[case]:
                del self._users[case], self._locks[case]

    def __len__(self) -> int:
        return len(self._locks)
