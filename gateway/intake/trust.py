"""Whose signature is it: a gpg verification against the staff pinned for the sending domain.

Pure. ``classify`` turns what gpg reported into a SignatureStatus; ``signer``
accepts only a good signature whose key is pinned to a registered staff
member of the agency owning the domain, and whose pinned address is the From
address. A valid signature from a key that is merely in the keyring (or
trusted by gpg's web of trust) is not enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from gateway.config.intake_config import DomainRule, Staff
from gateway.intake.refusal import Refusal


class SignatureStatus(StrEnum):
    GOOD = "good"
    BAD = "bad"
    EXPIRED_KEY = "expired-key"
    REVOKED_KEY = "revoked-key"
    UNKNOWN_KEY = "unknown-key"
    EXPIRED_SIGNATURE = "expired-signature"
    ERROR = "error"


@dataclass(frozen=True)
class Verdict:
    status: SignatureStatus
    fingerprint: str | None  # the primary key's fingerprint, as pinned in the config
    signed_at: datetime | None = None  # when the signature says it was made (a good one)


def classify(
    valid: bool,
    status: str | None,
    key_status: str | None,
    fingerprint: str | None,
    primary_fingerprint: str | None,
    sig_timestamp: str | None = None,
) -> Verdict:
    """python-gnupg's Verify fields (valid, status, key_status, fingerprints, the
    signature's time in seconds since the epoch) as a Verdict."""
    pinned = (primary_fingerprint or fingerprint or "").upper() or None
    if key_status == "signing key was revoked":
        return Verdict(SignatureStatus.REVOKED_KEY, pinned)
    if key_status == "signing key has expired":
        return Verdict(SignatureStatus.EXPIRED_KEY, pinned)
    if status == "no public key":
        return Verdict(SignatureStatus.UNKNOWN_KEY, None)
    if status == "signature expired":
        return Verdict(SignatureStatus.EXPIRED_SIGNATURE, pinned)
    if status == "signature bad":
        return Verdict(SignatureStatus.BAD, None)
    if valid and pinned:
        signed_at = (
            datetime.fromtimestamp(int(sig_timestamp), UTC)
            if sig_timestamp and sig_timestamp.isdigit()
            else None
        )
        return Verdict(SignatureStatus.GOOD, pinned, signed_at)
    return Verdict(SignatureStatus.ERROR, None)


_REFUSALS = {
    SignatureStatus.BAD: Refusal(
        550,
        "5.7.7",
        "Signature does not verify: the signed part was altered after signing",
        "signature-bad",
    ),
    SignatureStatus.EXPIRED_KEY: Refusal(
        550,
        "5.7.5",
        "The signing key has expired; renew it and register it with the hub",
        "key-expired",
    ),
    SignatureStatus.REVOKED_KEY: Refusal(
        550,
        "5.7.5",
        "The signing key has been revoked; register a new key with the hub",
        "key-revoked",
    ),
    SignatureStatus.UNKNOWN_KEY: Refusal(
        550,
        "5.7.5",
        "The signing key is unknown to this intake; register it with the hub",
        "key-unknown",
    ),
    SignatureStatus.EXPIRED_SIGNATURE: Refusal(
        550, "5.7.5", "The signature has expired", "signature-expired"
    ),
    SignatureStatus.ERROR: Refusal(
        550, "5.7.5", "The signature could not be checked (malformed signature)", "signature-error"
    ),
}


def signer(verdict: Verdict, rule: DomainRule, from_address: str) -> Staff | Refusal:
    """The pinned staff member who signed, or the refusal naming what is wrong."""
    if verdict.status is not SignatureStatus.GOOD or verdict.fingerprint is None:
        return _REFUSALS[verdict.status]
    staff = rule.staff_by_fingerprint(verdict.fingerprint)
    if staff is None:
        return Refusal(
            550,
            "5.7.1",
            f"The signature is valid but its key is not registered to a staff member of "
            f"{rule.agency}; ask the hub to pin it",
            "key-unpinned",
        )
    if staff.address != from_address.lower():
        return Refusal(
            550,
            "5.7.1",
            "The From address does not match the address registered for the signing key",
            "from-mismatch",
        )
    return staff
