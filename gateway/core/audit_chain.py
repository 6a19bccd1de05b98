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

Signatures cannot tell a file emptied, or cut back to an earlier checkpoint,
from one that was never longer. So each checkpoint's head (its place and
hash) is also kept in the tracking store, off the file, and ``verify`` given
that ``kept`` head requires the file to hold it: the record at that place,
with that hash.

Besides routing decisions, a chain may hold operators' actions (``operator``
records: who, with which role, did what to which id, and why), which the
console writes to a chain of its own.

Records hold header facts only (ids, agencies, types, purpose, lawful bases,
digests, outcomes): the router never sees personal data, and neither does
the audit trail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature

from gateway.core.envelope import HeaderFields, SigningIdentity
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.errors import GatewayError
from gateway.core.records import AuditHead
from gateway.core.registry import Registry

GENESIS_HASH = "0" * 64
CHECKPOINT_LABEL = "mash-gateway audit checkpoint v1"
DECISION = "decision"
OPERATOR = "operator"  # an operator's action in the console (who, what, on what)
CHECKPOINT = "checkpoint"
REQUIRED = ("seq", "at", "kind", "prev", "hash")
# Claimed facts of a message that failed verification are whatever its sender
# wrote; only values shaped like ids reach the audit trail.
CLAIMED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class Outcome(StrEnum):
    ROUTED = "routed"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    REJECTED = "rejected"
    RELEASED = "released"  # an operator released a quarantined message to the router
    DISCARDED = "discarded"  # an operator discarded a quarantined message
    EXPIRED = "expired"  # a quarantined message outlived the retention period


class Problem(StrEnum):
    """What verification found wrong; the names are what ``audit verify`` reports."""

    MALFORMED = "malformed"
    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"
    BROKEN = "broken chain"
    CHECKPOINT = "bad checkpoint"
    UNSIGNED = "appended out of band"
    CUT = "cut short"
    REWRITTEN = "rewritten"


class AuditRecordError(GatewayError):
    """An audit line is not a well-formed record: export reads only logs that verify."""


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
    operator: str | None = None  # who did it, for an operator's action; None for the router's


def from_header(
    fields: HeaderFields,
    header_sha256: str,
    outcome: Outcome,
    *,
    recipients: tuple[str, ...] | None = None,
    check: str | None = None,
    reason: str | None = None,
    agreement_ids: tuple[str, ...] = (),
    refers_to: str | None = None,
) -> Decision:
    """A decision about a verified message; ``recipients`` defaults to the header's."""
    return Decision(
        message_id=fields.message_id,
        correlation_id=fields.correlation_id,
        sender=fields.sender,
        message_type=fields.message_type,
        recipients=fields.recipients if recipients is None else recipients,
        purpose=fields.purpose,
        lawful_bases=fields.lawful_bases,
        header_sha256=header_sha256,
        outcome=outcome,
        check=check,
        reason=reason,
        agreement_ids=agreement_ids,
        refers_to=refers_to,
    )


def from_unverified(claimed: ClaimedFacts | None, check: str, reason: str) -> Decision:
    """The rejection of a message whose origin did not verify: claimed ids only if id-shaped."""

    def shaped(value: str | None) -> str | None:
        return value if value is not None and CLAIMED_ID.fullmatch(value) else None

    return Decision(
        message_id=shaped(claimed.message_id if claimed else None),
        correlation_id=shaped(claimed.correlation_id if claimed else None),
        sender=shaped(claimed.sender if claimed else None),
        message_type=shaped(claimed.message_type if claimed else None),
        recipients=(),
        purpose=None,
        lawful_bases=(),
        header_sha256=None,
        outcome=Outcome.REJECTED,
        check=check,
        reason=reason,
    )


@dataclass(frozen=True)
class OperatorAction:
    """What an operator did in the console: their account, role, the action and its object.

    ``target`` is an id (a message, a case, an account name), ``reason``
    the operator's own words where the action asks for them.
    """

    operator: str
    role: str
    action: str
    target: str | None = None
    reason: str | None = None


Record = Decision | OperatorAction


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
        {
            "label": CHECKPOINT_LABEL,
            "seq": seq,
            "at": at,
            "head": head,
            "signer": signer,
            "key_id": key_id,
        }
    )


def _utc(at: datetime) -> str:
    """UTC ISO 8601 with a Z; a naive time is a bug in the caller, not a guess to make."""
    if at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _link(head: ChainHead, body: dict[str, Any]) -> Link:
    record = {**body, "seq": head.seq + 1, "prev": head.hash}
    digest = record_hash(record)
    return Link(
        canonical({**record, "hash": digest}).decode() + "\n", ChainHead(head.seq + 1, digest)
    )


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
            # Only an operator's action names one, so routers' records keep their shape.
            **({"operator": decision.operator} if decision.operator is not None else {}),
        },
    )


def operator_link(head: ChainHead, at: datetime, action: OperatorAction) -> Link:
    return _link(
        head,
        {
            "kind": OPERATOR,
            "at": _utc(at),
            "operator": action.operator,
            "role": action.role,
            "action": action.action,
            "target": action.target,
            "reason": action.reason,
        },
    )


def record_link(head: ChainHead, at: datetime, record: Record) -> Link:
    """The link for a decision or an operator's action."""
    if isinstance(record, OperatorAction):
        return operator_link(head, at, record)
    return decision_link(head, at, record)


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


def verify(
    lines: Sequence[str],
    registry: Registry,
    gateway: str,
    *,
    open_tail: bool = False,
    kept: AuditHead | None = None,
) -> Verification:
    """Check the chain and every checkpoint; report the first problem and its line (1-based).

    ``open_tail`` accepts records after the last checkpoint, for a log whose
    writer is still running; otherwise they are reported as appended out of
    band, since nothing signed vouches for them. ``kept`` is the head the
    store kept at the last checkpoint it was told of: the file must hold it.
    A file that ends before it is reported as cut short, ahead of anything
    else wrong (a cut mid-line is also a malformed last line); a record in
    its place with another hash, after the chain's own findings.
    """
    chain = _verify_chain(lines, registry, gateway, open_tail)
    missing = None if kept is None else _kept_head_finding(lines, kept)
    if missing is None or (chain.finding is not None and missing.problem is not Problem.CUT):
        return chain
    return Verification(chain.records, chain.checkpoints, missing)


def _kept_head_finding(lines: Sequence[str], kept: AuditHead) -> Finding | None:
    """Whether the file holds the kept head: the record at ``kept.seq``, with ``kept.hash``."""
    last_seq, last_line = 0, 0
    for number, text in enumerate(lines, 1):
        record = _parse(text)
        if record is None:
            continue
        if record["seq"] == kept.seq:
            if record["hash"] == kept.hash:
                return None
            return Finding(
                number,
                Problem.REWRITTEN,
                f"record {kept.seq} is not the one the store kept at {_utc(kept.at)}: its hash "
                f"is {record['hash']}, the store's {kept.hash}",
            )
        last_seq, last_line = max(last_seq, record["seq"]), number
    store = f"the store's head is record {kept.seq} (hash {kept.hash}, kept at {_utc(kept.at)})"
    if not lines:
        return Finding(1, Problem.CUT, f"{store}; the file is empty: records 1-{kept.seq} missing")
    if last_seq > kept.seq:
        return Finding(1, Problem.CUT, f"{store}; the file has no record {kept.seq}")
    torn = " and a line cut short" if last_line < len(lines) else ""
    ends = f"ends at record {last_seq}" if last_seq else "holds no whole record"
    return Finding(
        last_line + 1,
        Problem.CUT,
        f"{store}; the file {ends}{torn}: records {last_seq + 1}-{kept.seq} are missing",
    )


def _verify_chain(
    lines: Sequence[str], registry: Registry, gateway: str, open_tail: bool
) -> Verification:
    parsed: list[dict[str, Any]] = []
    for number, text in enumerate(lines, 1):
        record = _parse(text)
        if record is None:
            return Verification(0, 0, Finding(number, Problem.MALFORMED, "not an audit record"))
        parsed.append(record)
    where: dict[int, int] = {}
    for number, record in enumerate(parsed, 1):
        where.setdefault(record["seq"], number)
    head, signed_through, records, checkpoints = GENESIS, 0, 0, 0
    for number, record in enumerate(parsed, 1):
        finding = _link_finding(number, record, head, where)
        if finding is None and record["kind"] == CHECKPOINT:
            problem = _checkpoint_problem(record, registry, gateway)
            if problem is not None:
                unproven = f"records from line {signed_through + 1} on are unproven"
                finding = Finding(number, Problem.CHECKPOINT, f"{problem}; {unproven}")
            signed_through, checkpoints = number, checkpoints + 1
        elif finding is None and record["kind"] not in (DECISION, OPERATOR):
            finding = Finding(number, Problem.MALFORMED, f"unknown kind {record['kind']!r}")
        if finding is not None:
            return Verification(records, checkpoints, finding)
        records += record["kind"] in (DECISION, OPERATOR)
        head = ChainHead(record["seq"], record["hash"])
    if not open_tail and signed_through < len(parsed):
        detail = (
            f"lines {signed_through + 1}-{len(parsed)} are not covered by a signed checkpoint "
            "(added outside the gateway, or its writer stopped without closing the log)"
        )
        return Verification(
            records, checkpoints, Finding(signed_through + 1, Problem.UNSIGNED, detail)
        )
    return Verification(records, checkpoints, None)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(key in record for key in REQUIRED):
        return None
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    if not all(isinstance(record[key], str) for key in ("at", "kind", "prev", "hash")):
        return None
    return record


def _link_finding(
    number: int, record: Mapping[str, Any], head: ChainHead, where: Mapping[int, int]
) -> Finding | None:
    """Whether ``record`` is intact and follows ``head``: its hash, its place, its link."""
    seq, expected = record["seq"], head.seq + 1
    if record_hash(record) != record["hash"]:
        return Finding(number, Problem.EDITED, f"record {seq}'s content does not match its hash")
    if seq != expected:
        found = where.get(expected)
        if seq < expected or (found is not None and found > number):
            at = f"; record {expected} is at line {found}" if found is not None else ""
            return Finding(
                number, Problem.REORDERED, f"record {seq} is where record {expected} belongs{at}"
            )
        missing = str(expected) if seq == expected + 1 else f"{expected}-{seq - 1}"
        return Finding(
            number, Problem.REMOVED, f"record {seq} follows record {head.seq}: {missing} missing"
        )
    if record["prev"] != head.hash:
        before = f"line {number - 1}" if number > 1 else "the start of the log"
        return Finding(
            number,
            Problem.BROKEN,
            f"record {seq} does not chain to {before}: that record was rewritten or inserted",
        )
    return None


def _checkpoint_problem(record: Mapping[str, Any], registry: Registry, gateway: str) -> str | None:
    """Why a checkpoint does not vouch for the chain head before it, or None if it does."""
    signer, key_id, signature = (record.get(k) for k in ("signer", "key_id", "signature"))
    if not (isinstance(signer, str) and isinstance(key_id, str) and isinstance(signature, str)):
        return "checkpoint lacks its signer, key id or signature"
    if signer != gateway:
        return f"signed by {signer!r}, not the gateway principal {gateway!r}"
    try:
        at = datetime.fromisoformat(record["at"])
    except ValueError:
        return f"unreadable time {record['at']!r}"
    if at.utcoffset() is None:
        return f"time {record['at']!r} has no timezone"
    try:
        key = registry.verifying_key(key_id, signer, at)
        raw = base64.b64decode(signature, validate=True)
    except GatewayError as exc:
        return f"signing key refused: {exc}"
    except binascii.Error:
        return "signature is not base64"
    statement = checkpoint_statement(record["seq"], record["at"], record["prev"], signer, key_id)
    try:
        key.verify(raw, statement)
    except InvalidSignature:
        return f"signature by {key_id} does not verify over the chain head"
    return None


EXPORT_FIELDS = (
    "seq",
    "at",
    "message_id",
    "correlation_id",
    "sender",
    "message_type",
    "recipients",
    "purpose",
    "lawful_bases",
    "header_sha256",
    "outcome",
    "check",
    "reason",
    "agreement_ids",
    "refers_to",
    "operator",
    "hash",
)


def decisions_between(lines: Sequence[str], start: date, end: date) -> list[dict[str, Any]]:
    """The decision records dated ``start`` to ``end`` inclusive (UTC), in export field order."""
    chosen = []
    for number, text in enumerate(lines, 1):
        record = _parse(text)
        if record is None:
            raise AuditRecordError(f"line {number}: not an audit record")
        if record["kind"] != DECISION:
            continue
        try:
            day = datetime.fromisoformat(record["at"]).astimezone(UTC).date()
        except ValueError:
            raise AuditRecordError(f"line {number}: unreadable time {record['at']!r}") from None
        if start <= day <= end:
            chosen.append({name: record.get(name) for name in EXPORT_FIELDS})
    return chosen
