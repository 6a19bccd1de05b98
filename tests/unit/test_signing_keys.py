"""Keys held in memory sign only while the registry allows: revocation and expiry bite at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core.envelope import SigningKeyNotHeld, SigningKeys
from gateway.core.registry import KeyRejected, KeyUse, PublicKeyRecord, key_id_for
from tests.unit.envelope_keys import NOW, keys, registry

pytestmark = pytest.mark.unit

POLICE = keys("police")


def successor(not_before_days: int = -1) -> tuple[Ed25519PrivateKey, PublicKeyRecord]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes_raw()
    record = PublicKeyRecord(
        key_id_for("police", KeyUse.SIGN, raw),
        "police",
        KeyUse.SIGN,
        raw,
        NOW + timedelta(days=not_before_days),
        NOW + timedelta(days=365),
    )
    return private, record


def police_records(**sign: Any) -> list[PublicKeyRecord]:
    sign_record, encrypt_record = POLICE.records()
    return [replace(sign_record, **sign), encrypt_record]


def test_the_registry_s_current_key_signs() -> None:
    held = SigningKeys("police", {POLICE.sign_id: POLICE.sign})
    signer = held.signer(registry(), NOW)
    assert (signer.agency, signer.key_id, signer.private_key) == (
        "police",
        POLICE.sign_id,
        POLICE.sign,
    )


def test_a_key_the_registry_revoked_does_not_sign_though_it_is_held() -> None:
    held = SigningKeys("police", {POLICE.sign_id: POLICE.sign})
    revoked = registry(police_records(revoked_at=NOW, revocation_reason="lost laptop"))
    with pytest.raises(KeyRejected, match="no valid sign key"):
        held.signer(revoked, NOW)


def test_a_held_key_stops_signing_when_it_expires() -> None:
    held = SigningKeys("police", {POLICE.sign_id: POLICE.sign})
    expiring = registry(police_records(expires=NOW + timedelta(seconds=1)))
    assert held.signer(expiring, NOW).key_id == POLICE.sign_id
    with pytest.raises(KeyRejected):
        held.signer(expiring, NOW + timedelta(seconds=1))


def test_after_rotation_and_revocation_the_successor_signs() -> None:
    private, record = successor()
    held = SigningKeys("police", {POLICE.sign_id: POLICE.sign, record.key_id: private})
    rotated = registry([*police_records(revoked_at=NOW), record])
    assert held.signer(rotated, NOW).key_id == record.key_id


def test_a_current_key_whose_private_half_is_not_held_is_named() -> None:
    _, record = successor()
    held = SigningKeys("police", {POLICE.sign_id: POLICE.sign})
    with pytest.raises(SigningKeyNotHeld, match=record.key_id):
        held.signer(registry([*police_records(), record]), NOW)


def test_a_successor_not_yet_valid_waits_for_its_time() -> None:
    private, record = successor(not_before_days=1)
    held = SigningKeys("police", {POLICE.sign_id: POLICE.sign, record.key_id: private})
    rotated = registry([*police_records(), record])
    assert held.signer(rotated, NOW).key_id == POLICE.sign_id
    assert held.signer(rotated, NOW + timedelta(days=1)).key_id == record.key_id
