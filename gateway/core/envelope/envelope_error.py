"""The one error the envelope raises, tagged with the check that failed.

Callers (router, edges, receipts) branch on ``check`` to pick a rejection
reason, so the set of checks is closed and named here.
"""

from __future__ import annotations

from typing import Literal

from gateway.core.errors import GatewayError

Check = Literal[
    "container",
    "header",
    "signature",
    "key",
    "key-scope",  # an intake key outside mail scope, or an edge key claiming mail (registry.py)
    "timestamp",
    "replay",
    "recipient",
    "ciphertext",
    "segments",
    "content-signature",
    "attachment",
    "pieces",
]


class EnvelopeError(GatewayError):
    """An envelope failed ``check``; the message starts with the check's name."""

    def __init__(self, check: Check, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check: Check = check
