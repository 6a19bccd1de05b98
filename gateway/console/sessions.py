"""Console sessions: a random id in a cookie, held in this process's memory only.

Why in memory: a restart signs everyone out, which is what an operator
expects of a security tool, and no session secret is ever written to disk.
Each session carries its own CSRF token (synchronizer token pattern), so a
form from another site cannot act in an operator's name. A visitor not yet
signed in gets an anonymous session too, so the sign-in form has a token
(no login CSRF); signing in replaces it with a new session (no fixation).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.console.accounts import Account

TOKEN_BYTES = 32
IDLE = timedelta(minutes=30)
LONGEST = timedelta(hours=12)
MAX_SESSIONS = 10_000  # anonymous sessions cost memory: oldest go first past this


@dataclass
class Session:
    id: str
    csrf: str
    started: datetime
    seen: datetime
    account: Account | None = None

    def token_matches(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf.encode())


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def start(self, now: datetime, account: Account | None = None) -> Session:
        if len(self._by_id) >= MAX_SESSIONS:
            self._forget_oldest()
        session = Session(
            secrets.token_urlsafe(TOKEN_BYTES),
            secrets.token_urlsafe(TOKEN_BYTES),
            now,
            now,
            account,
        )
        self._by_id[session.id] = session
        return session

    def find(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session for the cookie's id; an idle or too old one is ended."""
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        if now - session.seen > IDLE or now - session.started > LONGEST:
            self.end(session)
            return None
        session.seen = now
        return session

    def end(self, session: Session) -> None:
        self._by_id.pop(session.id, None)

    def _forget_oldest(self) -> None:
        for session in sorted(self._by_id.values(), key=lambda s: s.seen)[: MAX_SESSIONS // 10]:
            self.end(session)
