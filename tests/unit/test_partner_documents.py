"""The partner host's config and the signed documents that travel between partner and hub."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config.partner_config import partner_config_text
from gateway.core import partner_documents as documents
from gateway.core import signed_json
from gateway.core.registry import KeyUse, PublicKeyRecord, key_id_for

pytestmark = pytest.mark.unit

AREA = """# area
[area]
id = "demo"
private_keys = "/srv/hub/keys/private"

[broker]
url = "amqps://admin:s3cret@broker.example:5671/mash"
ca = "keys/broker-ca.crt"
cert = "keys/private/hub-broker.crt"
key = "keys/private/hub-broker.key"

[store]
url = "postgresql://router@db/mash"

[intake]
hostname = "mx.hub.example"

[[intake.domains]]
domain = "police.example"

[[agencies]]
id = "police"

[[adapters]]
agency = "csc"
kind = "filedrop"

[adapters.filedrop]
root = "csc-drop"

[[adapters]]
agency = "police"
kind = "filedrop"

[adapters.filedrop]
root = "police-drop"
"""


def test_the_partner_config_drops_the_intake_and_other_agencies_adapters() -> None:
    trimmed = tomllib.loads(partner_config_text(AREA, "police"))
    assert "intake" not in trimmed
    assert trimmed["adapters"] == [
        {"agency": "police", "kind": "filedrop", "filedrop": {"root": "police-drop"}}
    ]
    assert trimmed["area"]["private_keys"] == "keys/private"
    assert trimmed["store"]["url"] == "sqlite:///state/edge.db"
    assert trimmed["broker"] == {  # no admin login, no hub client certificate
        "url": "amqps://broker.example:5671/mash",
        "ca": "keys/broker-ca.crt",
    }
    assert trimmed["agencies"] == [{"id": "police"}]


def signing_record(key: Ed25519PrivateKey, agency: str = "police") -> PublicKeyRecord:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    return PublicKeyRecord(
        key_id_for(agency, KeyUse.SIGN, raw), agency, KeyUse.SIGN, raw, now, now + timedelta(365)
    )


def test_a_registration_is_read_back_only_with_its_own_signature() -> None:
    key = Ed25519PrivateKey.generate()
    record = signing_record(key)
    document = documents.registration_bytes(
        documents.Registration("demo", "police", record.key_id, (record,))
    )
    signature = signed_json.sign(document, key)
    assert documents.parse_registration(document, signature).keys == (record,)

    tampered = document.replace(b'"demo"', b'"elsewhere"')
    with pytest.raises(signed_json.SignatureInvalid, match="signature does not verify"):
        documents.parse_registration(tampered, signature)
    other = signed_json.sign(document, Ed25519PrivateKey.generate())
    with pytest.raises(signed_json.SignatureInvalid, match="signature does not verify"):
        documents.parse_registration(document, other)


def test_a_key_claimed_for_another_agency_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    record = signing_record(key, agency="csc")  # its id names csc
    document = documents.registration_bytes(
        documents.Registration("demo", "police", record.key_id, (record,))
    )
    with pytest.raises(documents.PartnerDocumentError, match="does not match its public key"):
        documents.parse_registration(document, signed_json.sign(document, key))


def test_fingerprints_are_stable_and_differ_for_any_change() -> None:
    assert signed_json.fingerprint(b"a") == signed_json.fingerprint(b"a")
    assert signed_json.fingerprint(b"a") != signed_json.fingerprint(b"b")
    assert len(signed_json.fingerprint(b"a").split()) == 8
