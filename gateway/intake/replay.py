"""Is this mail a copy of one accepted before: the keys a mail is remembered by, and the refusals.

Pure. A captured mail sent again is byte for byte a good mail: its signature
still verifies. So the intake remembers every mail it accepted, for the
area's replay window (replay_memory.py), by two keys:

- its Message-ID (RFC 5322 section 3.6.4, unique per mail), scoped to the
  sending domain, so no other partner can pre-empt a domain's ids;
- the SHA-256 of what each of its signatures covers (the PGP-signed part's
  exact bytes; a DKIM signature's signed header fields and body hash), so
  a replay under a fresh, unsigned Message-ID is caught too.

A mail matching either is refused (5.7.1), naming the message it was
accepted as, so a sending MTA that lost our 250 and tried again gets a
bounce that says the first copy arrived. Past the window the memory
forgets, so a signature made longer ago than the window is refused as too
old to tell from a replay: with both, a copy is refused at any age.
Signatures without a signing time (DKIM with neither t= nor a signed Date)
and mail authenticated by client certificate alone rest on the memory.
Keys are stored as digests, never as the Message-ID itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from gateway.intake.refusal import Refusal


class KeyKind(StrEnum):
    MESSAGE_ID = "message-id"
    SIGNED_CONTENT = "signed-content"


@dataclass(frozen=True)
class ReplayKey:
    kind: KeyKind
    digest: str  # SHA-256 hex


@dataclass(frozen=True)
class Seen:
    """A key the memory already holds: accepted before, or being accepted right now."""

    kind: KeyKind
    message_id: str | None  # the exchange message it was accepted as; None while in flight
    accepted_at: datetime | None


_WHAT = {
    KeyKind.MESSAGE_ID: "the same Message-ID",
    KeyKind.SIGNED_CONTENT: "the same signed content",
}


def message_id(values: list[str]) -> str | Refusal:
    """The mail's one Message-ID, without its angle brackets; ASCII, as RFC 5322 has it
    (this intake offers no SMTPUTF8), so no two different ids can read the same."""
    if len(values) != 1 or not values[0].strip().strip("<>").strip() or not values[0].isascii():
        return Refusal(
            550,
            "5.6.0",
            "Message refused: exactly one Message-ID header, in ASCII, is required (RFC 5322 "
            "section 3.6.4); it is how a replayed copy is recognised",
            "message-id",
        )
    return values[0].strip().strip("<>").strip()


def keys(domain: str, message_id: str, covered: tuple[str, ...]) -> tuple[ReplayKey, ...]:
    """What to remember an accepted mail by: its Message-ID in its domain, and each signed
    content digest (``covered``, SHA-256 hex as the authentication computed them)."""
    scoped = hashlib.sha256(f"{domain.lower()}\n{message_id}".encode()).hexdigest()
    return (
        ReplayKey(KeyKind.MESSAGE_ID, scoped),
        *(ReplayKey(KeyKind.SIGNED_CONTENT, digest) for digest in dict.fromkeys(covered)),
    )


def replayed(seen: Seen) -> Refusal:
    if seen.message_id is None or seen.accepted_at is None:
        when = "is being accepted on another connection right now"
    else:
        at = seen.accepted_at.astimezone(UTC)
        when = f"was accepted at {at:%Y-%m-%d %H:%M} UTC as {seen.message_id}"
    return Refusal(
        550,
        "5.7.1",
        f"A mail with {_WHAT[seen.kind]} {when}; a second copy is refused as a replay",
        "replay",
    )


def too_old(signed_at: datetime | None, now: datetime, window: timedelta) -> Refusal | None:
    """Refuse a signature made longer ago than the replay window (its memory has gone)."""
    if signed_at is None or now - signed_at <= window:
        return None
    return Refusal(
        550,
        "5.7.1",
        f"The signature was made at {signed_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, more than "
        f"{window.days} days ago: too old to tell from a replay; sign and send it again",
        "signature-too-old",
    )
