"""PGP/MIME read from raw bytes (the signed part byte for byte), and gpg verdicts against pins."""

from __future__ import annotations

import pytest

from gateway.config.intake_config import DomainRule, Policy, Staff
from gateway.intake.mime import MimeError, body_parts, encrypted_payload, entity, signed_parts
from gateway.intake.refusal import Refusal
from gateway.intake.trust import SignatureStatus, Verdict, classify, signer

pytestmark = pytest.mark.unit

# Folded headers, odd spacing and trailing blanks: bytes a re-serializer would change.
SIGNED_PART = (
    b"Content-Type: text/plain;\r\n\tcharset=us-ascii\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n\r\n"
    b"Line one  \r\n--not-the-boundary\r\n\r\n"
)
SIGNATURE = b"-----BEGIN PGP SIGNATURE-----\r\n\r\nabc\r\n-----END PGP SIGNATURE-----\r\n"


def signed_message(boundary: str = "b1") -> bytes:
    return (
        b"From: a@p.example\r\n"
        b"Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
        b' protocol="application/pgp-signature"; boundary="' + boundary.encode() + b'"\r\n'
        b"\r\nThis is a preamble.\r\n--"
        + boundary.encode()
        + b"\r\n"
        + SIGNED_PART
        + b"\r\n--"
        + boundary.encode()
        + b"  \r\n"
        b"Content-Type: application/pgp-signature\r\n\r\n"
        + SIGNATURE
        + b"\r\n--"
        + boundary.encode()
        + b"--\r\nepilogue\r\n"
    )


def test_the_signed_part_is_the_exact_bytes_between_the_boundaries() -> None:
    parts = signed_parts(entity(signed_message()))
    assert parts.signed == SIGNED_PART
    assert parts.signature == SIGNATURE


def test_a_delimiter_on_the_first_line_of_the_body() -> None:
    assert body_parts(b"--b\r\nx\r\n--b\r\ny\r\n--b--\r\n", "b") == [b"x", b"y"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (signed_message().replace(b"--b1--", b"--b2--"), "no closing boundary"),
        (signed_message().replace(b'pgp-signature"', b'pkcs7-signature"'), "protocol"),
        (signed_message().replace(b"application/pgp-signature\r\n", b"text/plain\r\n"), "second"),
        (signed_message().replace(b'; boundary="b1"', b""), "boundary"),
    ],
)
def test_malformed_structures_are_named(raw: bytes, problem: str) -> None:
    with pytest.raises(MimeError, match=problem):
        signed_parts(entity(raw))


def test_encrypted_payload_is_the_second_part() -> None:
    raw = (
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=e\r\n'
        b"\r\n--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        b"\r\n--e\r\nContent-Type: application/octet-stream\r\n\r\nCIPHERTEXT\r\n--e--\r\n"
    )
    assert encrypted_payload(entity(raw)) == b"CIPHERTEXT"
    with pytest.raises(MimeError, match="Version 1"):
        encrypted_payload(entity(raw.replace(b"Version: 1", b"Version: 2")))


FPR = "A" * 40
RULE = DomainRule("p.example", "police", Policy.PGP, (Staff("pc@p.example", FPR),))


@pytest.mark.parametrize(
    ("reported", "status"),
    [
        ((True, "signature valid", None, "B" * 40, FPR), SignatureStatus.GOOD),
        (
            (False, "signature valid", "signing key has expired", FPR, FPR),
            SignatureStatus.EXPIRED_KEY,
        ),
        (
            (False, "signature valid", "signing key was revoked", FPR, FPR),
            SignatureStatus.REVOKED_KEY,
        ),
        ((False, "no public key", None, None, None), SignatureStatus.UNKNOWN_KEY),
        ((False, "signature bad", None, None, None), SignatureStatus.BAD),
        ((False, None, None, None, None), SignatureStatus.ERROR),
    ],
)
def test_gpg_reports_are_classified(
    reported: tuple[bool, str | None, str | None, str | None, str | None], status: SignatureStatus
) -> None:
    verdict = classify(*reported)
    assert verdict.status is status
    if status is SignatureStatus.GOOD:
        assert verdict.fingerprint == FPR  # the primary key is what is pinned, not the subkey


def test_only_a_good_signature_by_the_pinned_staff_member_at_their_address_passes() -> None:
    good = Verdict(SignatureStatus.GOOD, FPR)
    assert signer(good, RULE, "PC@p.example") == RULE.staff[0]
    cases = {
        "from-mismatch": signer(good, RULE, "other@p.example"),
        "key-unpinned": signer(Verdict(SignatureStatus.GOOD, "C" * 40), RULE, "pc@p.example"),
        "key-expired": signer(Verdict(SignatureStatus.EXPIRED_KEY, FPR), RULE, "pc@p.example"),
        "signature-bad": signer(Verdict(SignatureStatus.BAD, None), RULE, "pc@p.example"),
    }
    for check, refusal in cases.items():
        assert isinstance(refusal, Refusal) and refusal.check == check
        assert refusal.status.startswith("5.7.")
