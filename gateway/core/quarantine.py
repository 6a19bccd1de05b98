"""Quarantined messages: what an entry is, why it is there, and what may be done with it.

Pure. The keeper (gateway/services/quarantine_keeper.py) takes each copy off
``gateway.quarantine`` into the tracking store; this module turns the broker's
headers into the failed check and reason, says whether an operator's release
or discard is allowed and why not, and which entries the retention period and
the size limit let go or keep out.

Why a copy can be in quarantine, and what its headers say:
- the router refused it: ``x-mash-quarantine-reason`` is ``check: reason``;
- RabbitMQ dead-lettered it from a queue after the delivery limit (a poison
  message, or an inbox edge that kept failing): ``x-first-death-queue`` and
  ``x-first-death-reason`` name the queue and why.

An entry is ``held`` until an operator releases or discards it, or the
retention period expires it; each of those is final, and the sealed body is
dropped from the store then (a released copy is back with the router, and if
it fails again it comes back to quarantine as a new entry).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.core.envelope.claimed import claimed_facts, claimed_header
from gateway.core.errors import GatewayError

ROUTER_REASON_HEADER = "x-mash-quarantine-reason"
DEAD_LETTER_CHECK = "delivery-limit"
UNKNOWN_CHECK = "unknown"
ROUTER_SOURCE = "router"


class Status(StrEnum):
    HELD = "held"
    RELEASED = "released"
    DISCARDED = "discarded"
    EXPIRED = "expired"


class QuarantineError(GatewayError):
    """An operator's action on a quarantined message cannot be done; the message says why."""


@dataclass(frozen=True)
class Facts:
    """What a quarantined envelope's header claims (unverified: it may be why it is here)."""

    message_id: str
    correlation_id: str | None
    message_type: str | None
    sender: str | None
    recipients: tuple[str, ...]
    created_at: datetime | None


@dataclass(frozen=True)
class Cause:
    """Why a copy is in quarantine: the check that failed, its reason, who put it there."""

    check: str
    reason: str
    source: str  # "router", or the queue RabbitMQ dead-lettered it from


@dataclass(frozen=True)
class Entry:
    """One quarantined copy, without its body; ``settled_*`` say what became of it."""

    entry_id: str
    facts: Facts
    cause: Cause
    quarantined_at: datetime
    size: int
    body_sha256: str
    status: Status = Status.HELD
    settled_at: datetime | None = None
    settled_by: str | None = None
    settle_reason: str | None = None


@dataclass(frozen=True)
class Filter:
    """Which entries ``quarantine list`` shows: held ones by default, newest last."""

    since: datetime | None = None
    check: str | None = None
    agency: str | None = None  # the sender or a recipient
    status: Status | None = Status.HELD
    limit: int = 100


@dataclass(frozen=True)
class Policy:
    """``[quarantine]``: how long a held copy is kept, and how much is held at most."""

    retention: timedelta = timedelta(days=30)
    max_messages: int = 10_000
    max_bytes: int = 1024 * 1024 * 1024


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Totals:
    """What is held now: counted against the policy's limits."""

    messages: int
    bytes: int


def facts_of(body: bytes, message_id: str | None) -> Facts:
    """The header's claimed facts; the broker's message id when even those cannot be read."""
    header = claimed_header(body)
    if header is not None:
        f = header.fields
        return Facts(
            f.message_id, f.correlation_id, f.message_type, f.sender, f.recipients, f.created_at
        )
    claimed = claimed_facts(body)
    if claimed is not None:
        return Facts(
            claimed.message_id,
            claimed.correlation_id or None,
            claimed.message_type or None,
            claimed.sender,
            (),
            None,
        )
    return Facts(message_id or "unreadable", None, None, None, (), None)


def cause_of(headers: Mapping[str, object]) -> Cause:
    """The failed check and reason from a quarantined copy's broker headers."""
    stated = _text(headers.get(ROUTER_REASON_HEADER))
    if stated:
        check, sep, reason = stated.partition(": ")
        return (
            Cause(check, reason, ROUTER_SOURCE)
            if sep
            else Cause(UNKNOWN_CHECK, stated, ROUTER_SOURCE)
        )
    queue = _text(headers.get("x-first-death-queue"))
    why = _text(headers.get("x-first-death-reason"))
    if queue:
        return Cause(
            DEAD_LETTER_CHECK
            if why in ("delivery_limit", "rejected", "")
            else why.replace("_", "-"),
            f"dead-lettered by RabbitMQ from {queue} ({why or 'no reason given'}): "
            "its consumer failed on it too many times",
            queue,
        )
    return Cause(UNKNOWN_CHECK, "no reason header: published to quarantine by hand?", "unknown")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def release_refusal(entry: Entry, agencies: Collection[str]) -> str | None:
    """Why ``entry`` cannot be released, or None if it can.

    A release goes to its claimed sender's own ingress (``mash.ingress.<sender>``),
    so a copy whose sender is unreadable or not one of the area's ``agencies``
    has nowhere to go: the router would refuse it anyway.
    """
    settled = _settled_refusal(entry, "released")
    if settled is not None:
        return settled
    sender = entry.facts.sender
    if sender not in agencies:
        claimed = "names no sender" if sender is None else f"claims sender {sender!r}"
        return (
            f"quarantined message {entry.entry_id} (message {entry.facts.message_id}) {claimed}, "
            "not an agency of this area: it has no ingress to be released to; discard it instead"
        )
    return None


def discard_refusal(entry: Entry) -> str | None:
    """Why ``entry`` cannot be discarded, or None if it can."""
    return _settled_refusal(entry, "discarded")


def _settled_refusal(entry: Entry, wanted: str) -> str | None:
    if entry.status is Status.HELD:
        return None
    when = entry.settled_at.isoformat(timespec="seconds") if entry.settled_at else "?"
    done = f"quarantined message {entry.entry_id} (message {entry.facts.message_id}) was already "
    if entry.status is Status.RELEASED:
        again = (
            "; if it failed again it is back in quarantine as a new entry: "
            "`mash-gateway quarantine list` shows it"
            if wanted == "released"
            else ""
        )
        return f"{done}released at {when} by {entry.settled_by}{again}"
    if entry.status is Status.DISCARDED:
        return (
            f"{done}discarded at {when} by {entry.settled_by} ({entry.settle_reason}); "
            f"it cannot be {wanted}: its copy is gone, so the sender must send it again"
        )
    return (
        f"{done}expired at {when} after the retention period; it cannot be {wanted}: "
        "its copy is gone, so the sender must send it again"
    )


def room_for(totals: Totals, policy: Policy) -> bool:
    """Whether the keeper may take another copy off the queue (else it stays in RabbitMQ)."""
    return totals.messages < policy.max_messages and totals.bytes < policy.max_bytes


def expiry_cutoff(now: datetime, policy: Policy) -> datetime:
    """Held copies quarantined before this are past the retention period."""
    return now - policy.retention
