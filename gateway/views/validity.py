"""How long each key and agreement has left: the status `keys list` and the console show.

Pure: the registry, the agreements and the time in, statuses out.
"""

from __future__ import annotations

from datetime import date, datetime

from gateway.core.registry import KeyRejected, KeyUse, PublicKeyRecord, Registry
from gateway.core.sharing import Agreement


def current_key_ids(registry: Registry, now: datetime) -> set[str]:
    """The key each agency signs or encrypts with now: its newest valid one per use and role
    (its edge's, and the secure-mail intake's signing key for it)."""
    ids = set()
    roles = ((KeyUse.SIGN, False), (KeyUse.ENCRYPT, False), (KeyUse.SIGN, True))
    for agency in registry.agencies:
        for use, intake in roles:
            try:
                ids.add(registry.current_key(agency, use, now, intake=intake).key_id)
            except KeyRejected:
                continue  # an agency without a usable key of this use has no current one
    return ids


def key_status(record: PublicKeyRecord, current_ids: set[str], now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.problem_at(now):
        return "expired" if now >= record.expires else "not yet valid"
    return "current" if record.key_id in current_ids else "valid (rotated)"


def agreement_status(agreement: Agreement, today: date) -> str:
    if today < agreement.valid_from:
        return "not yet in force"
    return "in force" if today <= agreement.valid_until else "expired"


def days_left(until: datetime, now: datetime) -> int:
    """Whole days until ``until`` (negative once past): what an expiry warning counts."""
    return (until - now).days
