"""The DKIM signatures on a raw mail, verified by dkimpy against pinned keys or DNS.

A shell around dkimpy: the raw DATA bytes in, one DkimSignature per
DKIM-Signature header out; partner_auth.py decides what they are worth.
Only signatures by the sending domain itself (d= equal to it) are
verified: no other could vouch for the mail, and skipping them means a
sender cannot make the intake look up keys of domains it names.

Keys: a domain whose rule pins ``dkim_keys`` is verified against those
alone (a selector that is not pinned fails without any lookup), handed to
dkimpy through its DNS hook (``dnsfunc``), so no DNS is needed; any other
domain's key is read from DNS by ``lookup`` (dkimpy's resolver, dnspython).
A DNS timeout marks the signature temporary, so the sender is told to try
again (451) rather than refused for good. RSA keys under 2048 bits fail.
dkimpy is CPU work and may block on DNS, so it runs in a worker thread.
Its own logger is silenced: its messages can quote header values (an i=
address), and logs never carry personal data; what failed reaches the
sender in the SMTP reply and the logs as a check name.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import dkim

from gateway.config.intake_config import DKIM_MIN_RSA_BITS, DomainRule
from gateway.intake.partner_auth import DkimSignature

# dkimpy's DNS hook: (b"<selector>._domainkey.<domain>.", timeout=...) -> the TXT record.
Lookup = Callable[..., bytes | None]
MAX_SIGNATURES = 8  # a mail gains one per signing hop; more is an attempt to burn CPU
DNS_TIMEOUT_SECONDS = 5
_QUIET = logging.getLogger("gateway.intake.dkimpy")
_QUIET.disabled = True


def _dns(name: bytes, timeout: int = DNS_TIMEOUT_SECONDS) -> bytes | None:
    txt: bytes | None = dkim.dnsplug.get_txt(name, timeout=timeout)
    return txt


class DkimVerifier:
    def __init__(self, lookup: Lookup = _dns) -> None:
        self.lookup = lookup

    async def signatures(self, raw: bytes, rule: DomainRule) -> tuple[DkimSignature, ...]:
        return await asyncio.to_thread(self._signatures, raw, rule)

    def _signatures(self, raw: bytes, rule: DomainRule) -> tuple[DkimSignature, ...]:
        try:
            verifier = dkim.DKIM(
                raw, logger=_QUIET, minkey=DKIM_MIN_RSA_BITS, timeout=DNS_TIMEOUT_SECONDS
            )
        except dkim.MessageFormatError as exc:
            # dkimpy reads the header section strictly (RFC 5322): one it cannot split into
            # fields has no signature anyone could verify, so it fails as the domain's.
            problem = f"the mail's header section cannot be read: {exc}"
            return (DkimSignature(rule.domain, "", False, problem),)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
        return tuple(
            self._one(verifier, index, rule) for index in range(min(count, MAX_SIGNATURES))
        )

    def _one(self, verifier: dkim.DKIM, index: int, rule: DomainRule) -> DkimSignature:
        try:
            prepared = verifier.verify_headerprep(index)
        except dkim.DKIMException as exc:
            return DkimSignature(_tag(verifier, b"d"), _tag(verifier, b"s"), False, str(exc))
        sig, include_headers, headers = prepared
        domain, selector = _tag(verifier, b"d"), _tag(verifier, b"s")
        if domain != rule.domain:
            return DkimSignature(domain, selector, False, "not by the From domain")
        pinned = {key.selector: key for key in rule.dkim_keys}
        if pinned and selector not in pinned:
            return DkimSignature(
                domain, selector, False, f"selector {selector} is not one of the pinned keys"
            )
        timed_out: list[str] = []

        def lookup(name: bytes, timeout: int = DNS_TIMEOUT_SECONDS) -> bytes | None:
            if pinned:
                return pinned[selector].record.encode("ascii")
            try:
                return self.lookup(name, timeout=timeout)
            except dkim.DnsTimeoutError as exc:
                timed_out.append(str(exc))
                raise

        try:
            valid = bool(verifier.verify_sig(sig, include_headers, headers[index], lookup))
            problem = None if valid else "the signature or its key does not match"
        except dkim.DKIMException as exc:
            valid, problem = False, str(exc)
        if timed_out:
            return DkimSignature(domain, selector, False, "DNS timeout", temporary=True)
        if not valid:
            return DkimSignature(domain, selector, False, problem)
        signed = list(verifier.signed_headers)
        return DkimSignature(
            domain,
            selector,
            True,
            signs_from=b"from" in verifier.include_headers,
            whole_body=b"l" not in sig,
            signed_at=signing_time(sig, signed),
            covered=_covered(sig, signed),
        )


def _tag(verifier: dkim.DKIM, name: bytes) -> str:
    value = verifier.signature_fields.get(name, b"")
    return value.decode("ascii", "replace").strip().lower() if isinstance(value, bytes) else ""


def signing_time(sig: dict[bytes, bytes], signed: list[tuple[bytes, bytes]]) -> datetime | None:
    """t=, or the Date header when the signature covers it (Microsoft 365 sets no t=)."""
    if b"t" in sig:
        return datetime.fromtimestamp(int(sig[b"t"]), UTC)
    date = next((value for name, value in signed if name.lower() == b"date"), None)
    if date is None:
        return None
    try:
        parsed = parsedate_to_datetime(date.decode("ascii", "replace").strip())
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _covered(sig: dict[bytes, bytes], signed: list[tuple[bytes, bytes]]) -> str:
    """SHA-256 of what the signature covers: its tags but b= (the body hash bh= among
    them) and the header fields it signs, as they were hashed."""
    digest = hashlib.sha256()
    for name in sorted(sig):
        if name != b"b":
            digest.update(name + b"=" + b"".join(sig[name].split()) + b"\0")
    for name, value in signed:
        digest.update(name.lower() + b":" + b" ".join(value.split()) + b"\0")
    return digest.hexdigest()
