"""A `tls` domain's mail must be vouched for: DKIM by the From domain, or its pinned certificate.

The DKIM cases sign real mail with dkimpy and verify it with the intake's
verifier; keys reach dkimpy through its DNS hook (pinned in the rule, or a
lookup function standing in for DNS), so nothing here needs a network.
"""

from __future__ import annotations

import asyncio
import base64
import stat
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gateway.config.area_config import parse_config
from gateway.config.intake_config import Authentication, DkimKey, DomainRule, Policy
from gateway.demo.area import DKIM_SELECTOR, demo_config
from gateway.demo.setup import HEALTH_DKIM_KEY, write_dkim_key
from gateway.intake.dkim_check import DkimVerifier, signing_time
from gateway.intake.partner_auth import DkimSignature, certificate_refusal, dkim_verdict
from gateway.intake.refusal import Refusal

pytestmark = pytest.mark.unit

DOMAIN = "health.demo.example"
PIN = "AB" * 32


def rule(**changes: object) -> DomainRule:
    base = DomainRule(
        DOMAIN,
        "health",
        Policy.TLS,
        (),
        authenticate=frozenset({Authentication.DKIM}),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def by_certificate() -> DomainRule:
    return rule(
        authenticate=frozenset({Authentication.CLIENT_CERTIFICATE}),
        client_certificates=frozenset({PIN}),
    )


def test_a_pinned_client_certificate_passes_and_any_other_is_refused_naming_it() -> None:
    assert certificate_refusal(by_certificate(), PIN.lower()) is None
    missing = certificate_refusal(by_certificate(), None)
    assert missing is not None and missing.reply.startswith("550 5.7.1 Mail from health")
    assert "presented none" in missing.reason
    other = certificate_refusal(by_certificate(), "CD" * 32)
    assert other is not None and other.check == "client-certificate-unpinned"
    assert f"SHA-256 {'CD' * 32}" in other.reason
    assert certificate_refusal(rule(), None) is None  # a DKIM domain asks for no certificate


def good(**changes: object) -> DkimSignature:
    return replace(DkimSignature(DOMAIN, "mash", True, covered="c" * 64), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("signatures", "reply"),
    [
        ((), "550 5.7.20 Mail from health.demo.example must carry a DKIM signature"),
        (
            (good(domain="attacker.example"),),
            "550 5.7.22 No DKIM signature by the From domain health.demo.example "
            "(signed by d=attacker.example only)",
        ),
        (
            (good(valid=False, problem="body hash mismatch"),),
            "550 5.7.20 The DKIM signature by health.demo.example (s=mash) does not verify: "
            "body hash mismatch",
        ),
        ((good(valid=False, temporary=True),), "451 4.4.3 The DKIM key of health.demo.example"),
        ((good(whole_body=False),), "550 5.7.21 The DKIM signature by health.demo.example covers"),
        ((good(signs_from=False),), "550 5.7.21 The DKIM signature by health.demo.example does"),
    ],
)
def test_dkim_verdicts_name_what_failed(signatures: tuple[DkimSignature, ...], reply: str) -> None:
    verdict = dkim_verdict(rule(), signatures)
    assert isinstance(verdict, Refusal) and verdict.reply.startswith(reply), verdict


def test_one_good_aligned_signature_among_others_vouches() -> None:
    chosen = good(selector="new")
    signatures = (good(domain="list.example"), good(valid=False, problem="x"), chosen)
    assert dkim_verdict(rule(), signatures) == chosen


# --- dkimpy, for real --------------------------------------------------------------------


def rsa_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode()


PRIVATE, PUBLIC = rsa_pair()
MAIL = (
    b"From: nurse@health.demo.example\r\nTo: hub@intake.demo.example\r\n"
    b"Subject: Referral\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@health.demo.example>\r\n\r\nA worried nurse.\r\n"
)


def signed(
    message: bytes = MAIL,
    domain: str = DOMAIN,
    selector: str = "mash",
    key: bytes = PRIVATE,
    **options: object,
) -> bytes:
    header = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        **options,
    )
    return bytes(header) + message


def pinned(key: str = PUBLIC, selector: str = "mash") -> DomainRule:
    return rule(dkim_keys=(DkimKey(selector, key, "rsa"),))


def check(raw: bytes, domain_rule: DomainRule, verifier: DkimVerifier | None = None) -> object:
    signatures = asyncio.run((verifier or DkimVerifier()).signatures(raw, domain_rule))
    return dkim_verdict(domain_rule, signatures)


def test_a_signature_verified_against_the_pinned_key_vouches_and_says_what_it_covers() -> None:
    verdict = check(signed(), pinned())
    assert isinstance(verdict, DkimSignature) and verdict.valid, verdict
    assert verdict.signed_at is not None
    assert datetime.now(UTC) - verdict.signed_at < timedelta(minutes=5)  # t=, set by dkimpy
    again = check(signed(), pinned())  # signed again, later: t= (so what is covered) differs
    assert isinstance(again, DkimSignature) and len(verdict.covered or "") == 64


def test_the_signing_time_is_t_or_else_the_signed_date_header() -> None:
    date = (b"date", b" Mon, 23 Nov 2026 10:00:00 +0100")
    assert signing_time({b"t": b"1795428000"}, [date]) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert signing_time({}, [date]) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert signing_time({}, [(b"subject", b"x")]) is None  # Date unsigned: no time to trust
    assert signing_time({}, [(b"date", b"yesterday")]) is None


def test_an_altered_body_does_not_verify() -> None:
    tampered = signed().replace(b"A worried nurse.", b"A worried nurse!")
    verdict = check(tampered, pinned())
    assert isinstance(verdict, Refusal) and verdict.status == "5.7.20"
    assert "body hash mismatch" in verdict.reason


def test_another_domains_valid_signature_is_not_the_authors() -> None:
    verdict = check(signed(domain="attacker.example"), pinned())
    assert isinstance(verdict, Refusal) and verdict.check == "dkim-unaligned"


def test_a_signature_by_an_unpinned_selector_or_key_fails() -> None:
    other_private, other_public = rsa_pair()
    unpinned = check(signed(selector="rogue", key=other_private), pinned())
    assert isinstance(unpinned, Refusal) and "selector rogue is not one of the pinned keys" in (
        unpinned.reason
    )
    wrong_key = check(signed(key=other_private), pinned())
    assert isinstance(wrong_key, Refusal) and wrong_key.check == "dkim-invalid"
    assert isinstance(check(signed(), pinned(other_public)), Refusal)


def test_a_header_section_dkimpy_cannot_read_is_refused_not_raised() -> None:
    """Found by tests/fuzz (fuzz_intake): dkimpy's MessageFormatError escaped, and the SMTP
    server answered 451, so the sender's server would have retried the mail for days."""
    broken = signed().replace(b"Subject: Referral\r\n", b"Subject: Referral\r\nnot a field\r\n")
    verdict = check(broken, pinned())
    assert isinstance(verdict, Refusal) and verdict.check == "dkim-invalid"
    assert verdict.reply.startswith("550 5.7.20 The DKIM signature by health.demo.example does")
    assert "header section cannot be read" in verdict.reason


def test_a_length_limited_signature_is_not_acceptable() -> None:
    verdict = check(signed(length=True), pinned())
    assert isinstance(verdict, Refusal) and verdict.status == "5.7.21"


def test_an_rsa_key_under_2048_bits_fails() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    der = weak.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    verdict = check(signed(key=pem), pinned(base64.b64encode(der).decode()))
    assert isinstance(verdict, Refusal) and "public key too small: 1024" in verdict.reason


def test_an_unpinned_domain_looks_its_key_up_and_a_timeout_is_temporary() -> None:
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return f"v=DKIM1; k=rsa; p={PUBLIC}".encode()

    verdict = check(signed(), rule(), DkimVerifier(dns))
    assert isinstance(verdict, DkimSignature) and asked == [b"mash._domainkey.health.demo.example."]

    def timing_out(name: bytes, timeout: int = 5) -> bytes | None:
        raise dkim.DnsTimeoutError("no answer")

    later = check(signed(), rule(), DkimVerifier(timing_out))
    assert isinstance(later, Refusal) and later.reply.startswith("451 4.4.3")


def test_only_the_from_domains_signatures_cause_a_lookup() -> None:
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return None

    check(signed(domain="elsewhere.example"), rule(), DkimVerifier(dns))
    assert asked == []


def test_the_demo_areas_health_pin_verifies_what_its_mail_server_signs(tmp_path: Path) -> None:
    """The setting `init` writes is a working one: health's stand-in key, its pinned half."""
    public_key = write_dkim_key(tmp_path / HEALTH_DKIM_KEY, replace=False)
    assert stat.S_IMODE((tmp_path / HEALTH_DKIM_KEY).stat().st_mode) == 0o600
    text = demo_config("amqp://guest:guest@127.0.0.1:5672/x", date(2026, 11, 23), (), public_key)
    intake = parse_config(text, tmp_path / "gateway.toml").intake
    assert intake is not None
    health = intake.rule_for(DOMAIN)
    assert health is not None and health.authenticate == {Authentication.DKIM}
    assert health.dkim_keys == (DkimKey(DKIM_SELECTOR, public_key, "rsa"),)
    key = (tmp_path / HEALTH_DKIM_KEY).read_bytes()
    verdict = check(signed(selector=DKIM_SELECTOR, key=key), health)
    assert isinstance(verdict, DkimSignature), verdict
