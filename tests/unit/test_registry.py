"""The registry decides which key may verify or receive, and when."""

from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.registry import (
    Agency,
    KeyRejected,
    KeyUse,
    PublicKeyRecord,
    Registry,
    UnknownAgency,
    key_id_for,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    agency: str,
    use: KeyUse,
    seed: int,
    start: datetime,
    days: int = 365,
    revoked: datetime | None = None,
) -> PublicKeyRecord:
    raw = bytes([seed]) * 32
    return PublicKeyRecord(
        key_id_for(agency, use, raw),
        agency,
        use,
        raw,
        start,
        start + timedelta(days=days),
        revoked,
        "compromised" if revoked else None,
    )


def registry(*records: PublicKeyRecord) -> Registry:
    return Registry.build(
        [Agency("police", "Police", "police"), Agency("hub", "Hub", "hub")], records
    )


def test_key_id_names_agency_use_and_fingerprint() -> None:
    key_id = key_id_for("police", KeyUse.SIGN, b"\x01" * 32)
    agency, use, fingerprint = key_id.split(".")
    assert (agency, use, len(fingerprint)) == ("police", "sign", 16)


def test_rotated_key_still_verifies_until_it_expires() -> None:
    old = record("police", KeyUse.SIGN, 1, T0, days=30)
    new = record("police", KeyUse.SIGN, 2, T0 + timedelta(days=10))
    reg = registry(old, new)
    at = T0 + timedelta(days=20)
    assert reg.current_key("police", KeyUse.SIGN, at) == new
    assert registry(new, old).current_key("police", KeyUse.SIGN, at) == old  # last registered wins
    assert reg.record(old.key_id, "police", KeyUse.SIGN, at) == old
    with pytest.raises(KeyRejected, match="expired"):
        reg.record(old.key_id, "police", KeyUse.SIGN, T0 + timedelta(days=30))


def test_revoked_key_never_verifies_even_before_revocation_time() -> None:
    revoked = record("police", KeyUse.SIGN, 1, T0, revoked=T0 + timedelta(days=100))
    with pytest.raises(KeyRejected, match="revoked"):
        registry(revoked).record(revoked.key_id, "police", KeyUse.SIGN, T0 + timedelta(days=1))


def test_unknown_key_id_is_rejected() -> None:
    with pytest.raises(KeyRejected, match="unknown key id"):
        registry().record("police.sign.0000000000000000", "police", KeyUse.SIGN, T0)


def test_key_of_another_agency_is_rejected() -> None:
    hub_key = record("hub", KeyUse.SIGN, 1, T0)
    with pytest.raises(KeyRejected, match="belongs to 'hub'"):
        registry(hub_key).record(hub_key.key_id, "police", KeyUse.SIGN, T0 + timedelta(days=1))


def test_encryption_key_cannot_sign() -> None:
    enc = record("police", KeyUse.ENCRYPT, 1, T0)
    with pytest.raises(KeyRejected, match="not a sign key"):
        registry(enc).record(enc.key_id, "police", KeyUse.SIGN, T0 + timedelta(days=1))


def test_key_not_yet_valid_is_rejected() -> None:
    future = record("police", KeyUse.SIGN, 1, T0 + timedelta(days=5))
    with pytest.raises(KeyRejected, match="not valid before"):
        registry(future).record(future.key_id, "police", KeyUse.SIGN, T0)


def test_agency_without_usable_key_has_no_current_key() -> None:
    revoked = record("police", KeyUse.ENCRYPT, 1, T0, revoked=T0)
    with pytest.raises(KeyRejected, match="no valid encrypt key"):
        registry(revoked).encryption_key("police", T0 + timedelta(days=1))


def test_unknown_agency_is_named() -> None:
    with pytest.raises(UnknownAgency, match="'fire'"):
        registry().current_key("fire", KeyUse.SIGN, T0)
