"""Failed sign-ins slow a guesser down: after ``LIMIT`` failures from one address within
``WINDOW``, that address is refused (429) until the oldest failure ages out.

In memory, like the sessions: a restart forgets it, which costs a guesser
a restart of the console they cannot cause. Counted per client address, not
per account name, so a guesser cannot lock an operator out by name.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

LIMIT = 10
WINDOW = timedelta(minutes=15)
MAX_ADDRESSES = 10_000


class SignInThrottle:
    def __init__(self) -> None:
        self._failures: dict[str, deque[datetime]] = {}

    def refused(self, address: str, now: datetime) -> bool:
        failures = self._failures.get(address)
        if failures is None:
            return False
        while failures and now - failures[0] > WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return False
        return len(failures) >= LIMIT

    def failed(self, address: str, now: datetime) -> None:
        if address not in self._failures and len(self._failures) >= MAX_ADDRESSES:
            self._failures.pop(next(iter(self._failures)))  # the longest-known address goes
        self._failures.setdefault(address, deque(maxlen=LIMIT)).append(now)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
