"""First-come, first-served locks by key, alive only while someone holds or waits for one.

- The router holds one per case (correlation id): it verifies a message (CPU
  only, no awaits) before it asks for the lock, so requests are made in
  delivery order and asyncio grants them in that order; messages of a case
  are routed in arrival order while other cases overlap.
- An edge holds one per message id, so two copies of one message (a
  redelivery racing the original) cannot both find it unhandled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
