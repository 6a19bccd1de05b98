"""The audit trail's records and hash chain: building, signing and verifying them.

Pure: values in, values out; the shell (``audit_log``) owns the file and the
clock. Each record is one line of canonical JSON (sorted keys, no spaces,
UTF-8) carrying ``prev``, the previous record's ``hash``, and its own
``hash``: the SHA-256 of its canonical JSON without ``hash``. Editing,
removing or reordering a record therefore breaks the chain where it happened.

Anyone with write access could recompute every hash after a change, so the
chain head is signed periodically by the gateway principal's Ed25519 key in
a checkpoint record. A record is trustworthy only once a checkpoint after it
verifies against the registry; records after the last checkpoint are what an
out-of-band append looks like, unless the writer is still running.

Records hold header facts only (ids, agencies, types, purpose, lawful bases,
digests, outcomes): the router never sees personal data, and neither does
the audit trail.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature

from gateway.envelope import SigningIdentity
from gateway.errors import GatewayError
from gateway.registry import Registry

GENESIS_HASH = "0" * 64
CHECKPOINT_LABEL = "mash-gateway audit checkpoint v1"
DECISION = "decision"
CHECKPOINT = "checkpoint"
REQUIRED = ("seq", "at", "kind", "prev", "hash")


class Outcome(StrEnum):
    ROUTED = "routed"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    REJECTED = "rejected"


class Problem(StrEnum):
    """What verification found wrong; the names are what ``audit verify`` reports."""

    MALFORMED = "malformed"
    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"
    INSERTED = "inserted"
    CHECKPOINT = "bad checkpoint"
    UNSIGNED = "appended out of band"


class AuditRecordError(GatewayError):
    """An audit line is not a well-formed decision record (export reads only verified logs)."""


@dataclass(frozen=True)
class Decision:
    """A routing decision or state change, in header facts only.

    ``refers_to`` names the message whose state changed when that is not the
    message itself: the request an answer answers, the message a receipt
    receipts. Unverified messages may lack every id; ``None`` says so.
    """

    message_id: str | None
    correlation_id: str | None
    sender: str | None
    message_type: str | None
    recipients: tuple[str, ...]
    purpose: str | None
    lawful_bases: tuple[str, ...]
    header_sha256: str | None
    outcome: Outcome
    check: str | None = None
    reason: str | None = None
    agreement_ids: tuple[str, ...] = ()
    refers_to: str | None = None


@dataclass(frozen=True)
class ChainHead:
    """The last record written: the next one takes ``seq + 1`` and chains to ``hash``."""

    seq: int
    hash: str


GENESIS = ChainHead(0, GENESIS_HASH)


@dataclass(frozen=True)
class Link:
    """One record ready to append (its line, newline included) and the head it makes."""

    line: str
    head: ChainHead


@dataclass(frozen=True)
class Finding:
    line: int
    problem: Problem
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem.value}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    records: int
    checkpoints: int
    finding: Finding | None


def canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def checkpoint_statement(seq: int, at: str, head: str, signer: str, key_id: str) -> bytes:
    """What a checkpoint signs: the chain head, bound to its place, time and signer."""
    return canonical(
        {"label": CHECKPOINT_LABEL, "seq": seq, "at": at, "head": head, "signer": signer,
         "key_id": key_id}
    )


def _utc(at: datetime) -> str:
    if at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone().astimezone(tz=None).isoformat() if False else _iso(at)


def _iso(at: datetime) -> str:
    from datetime import UTC

    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _link(head: ChainHead, body: dict[str, Any]) -> Link:
    record = {**body, "seq": head.seq + 1, "prev": head.hash}
    digest = record_hash(record)
    return Link(canonical({**record, "hash": digest}).decode() + "\n", ChainHead(head.seq + 1, digest))


def decision_link(head: ChainHead, at: datetime, decision: Decision) -> Link:
    return _link(
        head,
        {
            "kind": DECISION,
            "at": _utc(at),
            "message_id": decision.message_id,
            "correlation_id": decision.correlation_id,
            "sender": decision.sender,
            "message_type": decision.message_type,
            "recipients": list(decision.recipients),
            "purpose": decision.purpose,
            "lawful_bases": list(decision.lawful_bases),
            "header_sha256": decision.header_sha256,
            "outcome": decision.outcome.value,
            "check": decision.check,
            "reason": decision.reason,
            "agreement_ids": list(decision.agreement_ids),
            "refers_to": decision.refers_to,
        },
    )


def checkpoint_link(head: ChainHead, at: datetime, signer: SigningIdentity) -> Link:
    """A checkpoint signing ``head.hash``, the hash of the record just before it."""
    when = _utc(at)
    statement = checkpoint_statement(head.seq + 1, when, head.hash, signer.agency, signer.key_id)
    signature = signer.private_key.sign(statement)
    return _link(
        head,
        {
            "kind": CHECKPOINT,
            "at": when,
            "signer": signer.agency,
            "key_id": signer.key_id,
            "signature": base64.b64encode(signature).decode("ascii"),
        },
    )
