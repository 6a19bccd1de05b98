"""The area directory's acceptance rules, on keys made here: area, version, signer, signature."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core import area_directory, signed_json
from gateway.core.area_directory import Directory, DirectoryRefused, Refusal
from gateway.core.registry import KeyRejected

pytestmark = pytest.mark.unit

GATEWAY = Ed25519PrivateKey.generate()
ISSUED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def gateway_key(key_id: str, at: datetime) -> Ed25519PublicKey:
    if key_id != "gateway.sign.1":
        raise KeyRejected(f"key {key_id} belongs to 'police', not 'gateway'")
    return GATEWAY.public_key()


def signed(
    version: int = 5, area: str = "demo", key_id: str = "gateway.sign.1"
) -> tuple[bytes, bytes]:
    document = area_directory.directory_bytes(
        Directory(area, version, ISSUED, key_id, '[[agencies]]\nid = "hub"\n')
    )
    return document, signed_json.sign(document, GATEWAY)


def accept(document: bytes, signature: bytes, held: int = 4) -> Directory:
    return area_directory.accept(
        document, signature, area="demo", held_version=held, gateway_key=gateway_key
    )


def refusal(document: bytes, signature: bytes, held: int = 4) -> Refusal:
    with pytest.raises(DirectoryRefused) as refused:
        accept(document, signature, held)
    return refused.value.refusal


def test_a_newer_directory_signed_by_the_gateway_is_accepted() -> None:
    assert accept(*signed()).version == 5


def test_each_refusal_names_its_reason() -> None:
    document, signature = signed()
    assert refusal(document, signature, held=5) is Refusal.NOT_NEWER
    assert refusal(*signed(area="elsewhere")) is Refusal.AREA
    assert refusal(*signed(key_id="police.sign.1")) is Refusal.SIGNER
    assert refusal(document.replace(b"hub", b"hud"), signature) is Refusal.SIGNATURE
    assert refusal(b"{not json", signature) is Refusal.MALFORMED
    assert refusal(document, b"c2lnbmF0dXJl\n") is Refusal.SIGNATURE


def test_stored_form_keeps_document_and_signature_together() -> None:
    document, signature = signed()
    assert area_directory.from_stored(area_directory.stored(document, signature)) == (
        document,
        signature.strip(),
    )
