"""Intake keys sign only mail; edge keys never claim it (core/registry.py's scope rule).

The secure-mail intake signs with keys of its own for each agency whose mail
it takes, marked ``intake = true`` in ``[[keys]]``; the header's Assurance
says whether a message came by mail, so verification refuses an intake key
on anything else and an edge key on mail-borne assurance, naming the check
``key-scope``. Each side seals only with a key of its own role.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from envelope_keys import (
    NOW,
    WINDOW,
    fields,
    intake_key,
    intake_record,
    intake_signer,
    keys,
    registry,
)

from gateway.config.area_config import ConfigError, parse_config
from gateway.config.toml_tables import directory_tables, with_directory
from gateway.core.envelope import EnvelopeError, SigningKeys, seal_bytes, verify
from gateway.core.registry import KeyRejected, KeyUse, key_id_for, scope_problem
from gateway.demo.area import demo_config

pytestmark = pytest.mark.unit

MAIL = ("pgp-verified", "tls-only")
EDGE = ("edge-signed",)


@pytest.mark.parametrize("assurance", MAIL)
def test_an_intake_key_may_sign_mail(assurance: str) -> None:
    assert scope_problem(intake_record("police"), assurance) is None


@pytest.mark.parametrize("assurance", EDGE)
def test_an_intake_key_may_not_sign_anything_else(assurance: str) -> None:
    problem = scope_problem(intake_record("police"), assurance)
    assert problem is not None and problem.startswith("intake key used outside mail scope")


@pytest.mark.parametrize("assurance", MAIL)
def test_an_edge_key_may_not_claim_mail(assurance: str) -> None:
    edge_key = keys("police").records()[0]
    problem = scope_problem(edge_key, assurance)
    assert problem is not None and "only police's intake key" in problem


def test_an_edge_key_signs_what_its_edge_sends() -> None:
    assert scope_problem(keys("police").records()[0], "edge-signed") is None


def sealed(signer_is_intake: bool, assurance: str) -> bytes:
    signer = intake_signer("police") if signer_is_intake else keys("police").signer()
    return seal_bytes(fields(assurance=assurance), b"x", signer, [keys("health").recipient()])


def test_verification_refuses_an_intake_key_on_an_edge_signed_message() -> None:
    with pytest.raises(EnvelopeError) as refused:
        verify(sealed(True, "edge-signed"), registry(), NOW, WINDOW, None)
    assert refused.value.check == "key-scope"
    assert "intake key used outside mail scope" in str(refused.value)


def test_verification_refuses_an_edge_key_on_mail() -> None:
    with pytest.raises(EnvelopeError) as refused:
        verify(sealed(False, "pgp-verified"), registry(), NOW, WINDOW, None)
    assert refused.value.check == "key-scope"


@pytest.mark.parametrize("assurance", MAIL)
def test_verification_takes_mail_signed_by_the_intake_key(assurance: str) -> None:
    verified = verify(sealed(True, assurance), registry(), NOW, WINDOW, None)
    assert verified.header.signing_key_id == intake_record("police").key_id


def test_each_role_picks_only_its_own_current_key() -> None:
    reg = registry()
    assert reg.current_key("police", KeyUse.SIGN, NOW).key_id == keys("police").sign_id
    picked = reg.current_key("police", KeyUse.SIGN, NOW, intake=True)
    assert picked.key_id == intake_record("police").key_id


def test_an_edge_holding_the_intake_key_still_signs_with_its_own() -> None:
    held = SigningKeys(
        "police",
        {
            keys("police").sign_id: keys("police").sign,
            intake_record("police").key_id: intake_key("police"),
        },
    )
    assert held.signer(registry(), NOW).key_id == keys("police").sign_id
    intake = replace(held, intake=True)
    assert intake.signer(registry(), NOW).key_id == intake_record("police").key_id


def test_the_intake_without_a_key_of_its_own_signs_nothing() -> None:
    held = SigningKeys("police", {keys("police").sign_id: keys("police").sign}, intake=True)
    only_edge_keys = registry([r for a in ("police", "health") for r in keys(a).records()])
    with pytest.raises(KeyRejected, match="no valid intake sign key"):
        held.signer(only_edge_keys, NOW)


def key_block(use: str, intake: str) -> str:
    record = intake_record("police")
    key_id = key_id_for("police", KeyUse(use), record.raw)
    return (
        f'\n[[keys]]\nagency = "police"\nuse = "{use}"\nkey_id = "{key_id}"\n'
        f'public = "{record.public_b64}"\n'
        f"not_before = 2026-01-01T00:00:00Z\nexpires = 2027-01-01T00:00:00Z\n{intake}"
    )


BASE = demo_config("amqp://guest:guest@127.0.0.1:5672/mash-demo", NOW.date())
PATH = Path("/areas/demo/gateway.toml")


def test_the_config_marks_intake_keys() -> None:
    config = parse_config(BASE + key_block("sign", "intake = true\n"), PATH)
    (record,) = config.registry.keys.values()
    assert record.intake and record.role == "intake"


def test_the_signed_area_directory_carries_the_intake_mark() -> None:
    """The directory's tables are the config's own lines: a host applying it sees the mark."""
    published = directory_tables(BASE + key_block("sign", "intake = true\n"))
    host = parse_config(with_directory(BASE, published), PATH)
    assert [k.intake for k in host.registry.keys.values()] == [True]


@pytest.mark.parametrize(
    ("intake", "expected"),
    [('intake = "yes"\n', "must be true or false"), ("intake = true\n", "only a sign key")],
)
def test_a_wrong_intake_mark_names_the_key(intake: str, expected: str) -> None:
    use = "sign" if "yes" in intake else "encrypt"
    with pytest.raises(ConfigError, match=rf"keys\[0\]\.intake: {expected}"):
        parse_config(BASE + key_block(use, intake), PATH)
