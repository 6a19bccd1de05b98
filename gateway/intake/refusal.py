"""An SMTP refusal: reply code, enhanced status (RFC 3463) and a reason the sender can act on.

``check`` is a short, fixed name for the failed check: it is what logs and
metrics carry (never an address or any content of the mail).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    code: int
    status: str
    reason: str
    check: str

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.reason}"
