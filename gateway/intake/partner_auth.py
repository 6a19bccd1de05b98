"""Did a `tls` domain's mail come from that domain: the client-certificate and DKIM decisions.

Pure: what the TLS handshake and dkimpy reported in, the accepted signature
or a Refusal naming what failed out. A `tls` domain's staff do not sign, so
the domain's own mail system must vouch for each mail, in the ways its rule
lists (``authenticate``, all of them must pass):

- ``client-certificate``: the session's TLS client certificate is one of the
  SHA-256 fingerprints pinned for the domain. The handshake already checked
  it chains to a trusted CA and is in date; the pin says it is the partner's.
- ``dkim``: a DKIM signature (RFC 6376) that verifies, made by the From
  domain itself (d= equal to it: strict alignment, so no other domain's
  signature, not even a parent's or a subdomain's, vouches for it), over the
  From header and the whole body (no l= tag, which would let anyone append
  text below the signed part), with a pinned selector when keys are pinned.
  Enhanced codes are RFC 7372's: 5.7.20 no passing signature, 5.7.21 none
  acceptable, 5.7.22 none by the author's domain.

The digest of what an accepted signature covers is kept by the replay check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.config.intake_config import Authentication, DomainRule
from gateway.intake.refusal import Refusal

MAX_PROBLEM = 160  # an SMTP reply is one line; dkimpy's messages can be long


@dataclass(frozen=True)
class DkimSignature:
    """One DKIM-Signature header of a mail, as the verifier found it."""

    domain: str  # d=, lower-case
    selector: str  # s=, lower-case
    valid: bool  # it verified with the domain's key
    problem: str | None = None  # why it did not verify, or why it is not acceptable
    temporary: bool = False  # the key could not be looked up now (DNS): try again later
    signs_from: bool = True  # h= names From
    whole_body: bool = True  # no l= tag
    signed_at: datetime | None = None  # t=, or the Date header when h= covers it
    covered: str | None = None  # SHA-256 of what the signature covers (headers, body hash)


def certificate_refusal(rule: DomainRule, fingerprint: str | None) -> Refusal | None:
    """Refuse a session whose client certificate is not one pinned for the domain, when
    its rule asks for one; None when the certificate is not asked for or is pinned."""
    if Authentication.CLIENT_CERTIFICATE not in rule.authenticate:
        return None
    if fingerprint is None:
        return Refusal(
            550,
            "5.7.1",
            f"Mail from {rule.domain} must come from its mail server's pinned TLS client "
            "certificate; this session presented none",
            "client-certificate-missing",
        )
    if fingerprint.upper() not in rule.client_certificates:
        return Refusal(
            550,
            "5.7.1",
            f"The TLS client certificate of this session (SHA-256 {fingerprint.upper()}) is "
            f"not pinned for {rule.domain}",
            "client-certificate-unpinned",
        )
    return None


def dkim_verdict(
    rule: DomainRule, signatures: tuple[DkimSignature, ...]
) -> DkimSignature | Refusal:
    """The signature that vouches for the mail, or the refusal naming what failed."""
    domain = rule.domain
    if not signatures:
        return Refusal(
            550,
            "5.7.20",
            f"Mail from {domain} must carry a DKIM signature by {domain}; this one has none",
            "dkim-missing",
        )
    aligned = [s for s in signatures if s.domain == domain]
    if not aligned:
        others = ", ".join(sorted({s.domain for s in signatures}))
        return Refusal(
            550,
            "5.7.22",
            f"No DKIM signature by the From domain {domain} (signed by d={others} only)",
            "dkim-unaligned",
        )
    passing = [s for s in aligned if s.valid]
    if not passing:
        first = aligned[0]
        if all(s.temporary for s in aligned):
            return Refusal(
                451,
                "4.4.3",
                f"The DKIM key of {domain} could not be looked up now; try again later",
                "dkim-temporary",
            )
        selector = f" (s={first.selector})" if first.selector else ""
        return Refusal(
            550,
            "5.7.20",
            f"The DKIM signature by {domain}{selector} does not verify: "
            f"{_short(first.problem or 'signature mismatch')}",
            "dkim-invalid",
        )
    acceptable = [s for s in passing if s.signs_from and s.whole_body]
    if not acceptable:
        reason = (
            "covers only part of the body (l=); sign the whole body"
            if passing[0].signs_from
            else "does not sign the From header, which RFC 6376 requires"
        )
        return Refusal(
            550, "5.7.21", f"The DKIM signature by {domain} {reason}", "dkim-unacceptable"
        )
    return acceptable[0]


def _short(problem: str) -> str:
    flat = " ".join(problem.split())
    return flat if len(flat) <= MAX_PROBLEM else flat[: MAX_PROBLEM - 3] + "..."
