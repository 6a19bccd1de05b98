"""A broken gateway.toml is refused with the key path and what is wrong."""

import base64
from datetime import date
from pathlib import Path

import pytest

from gateway.config.area_config import ConfigError, parse_config
from gateway.core.registry import KeyUse, key_id_for
from gateway.demo.area import demo_config

pytestmark = pytest.mark.unit

PATH = Path("/areas/demo/gateway.toml")
BASE = demo_config("amqp://guest:guest@127.0.0.1:5672/mash-demo", date(2026, 11, 23))


def test_demo_config_parses_with_agencies_and_agreements() -> None:
    config = parse_config(BASE, PATH)
    assert config.hub == "hub"
    assert config.gateway == "gateway"
    assert set(config.registry.agencies) == {
        "gateway",
        "hub",
        "police",
        "csc",
        "health",
        "probation",
        "education",
        "housing",
    }
    assert {a.id for a in config.agreements} == {
        "isa-demo-referrals",
        "isa-demo-requests",
        "isa-demo-responses",
    }
    assert config.private_keys_dir == Path("/areas/demo/keys/private")
    assert config.store_url == "sqlite:////areas/demo/state/gateway.db"


def test_demo_area_makes_housing_an_email_only_agency_with_its_pinned_officer() -> None:
    fingerprint = "A" * 40
    text = demo_config(
        "amqp://guest:guest@127.0.0.1:5672/mash-demo",
        date(2026, 11, 23),
        (("housing.officer@housing.demo.example", fingerprint),),
    )
    intake = parse_config(text, PATH).intake
    assert intake is not None and intake.relay is not None
    rule = intake.rule_for("housing.demo.example")
    assert rule is not None and (rule.agency, rule.policy, rule.inbox) == ("housing", "pgp", True)
    assert [(s.address, s.fingerprint) for s in rule.staff] == [
        ("housing.officer@housing.demo.example", fingerprint)
    ]
    assert intake.relay.starttls and intake.relay.ca_file == intake.tls_cert


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('kind = "police"', 'kind = "polce"', "agencies[2].kind: unknown kind 'polce'"),
        ('id = "police"', 'id = "Police Force"', "agencies[2].id: 'Police Force' must match"),
        ('kind = "gateway"', 'kind = "hub"', "area.gateway: 'gateway' must name an agency of kind"),
        ('hub = "hub"', 'hub = "mash"', "area.hub: 'mash' is not one of the agencies"),
        (
            'purposes = ["child-safeguarding", "adult-safeguarding"]',
            'purposes = ["curiosity"]',
            "agreements[0].purposes: unknown value 'curiosity'",
        ),
        (
            'message_types = ["Referral"]',
            'message_types = ["Gossip"]',
            "agreements[0].message_types: unknown value 'Gossip'",
        ),
        (
            '[broker]\nurl = "amqp://guest:guest@127.0.0.1:5672/mash-demo"',
            "",
            "broker: missing table",
        ),
        (
            'id = "demo"',
            'id = "Demo Borough"',
            "area.id: RabbitMQ user prefix 'mash-Demo Borough-' must match",
        ),
        (
            '/mash-demo"\n',
            '/mash-demo"\nuser_prefix = "-rm"\n',
            "broker.user_prefix: RabbitMQ user prefix '-rm' must match",
        ),
    ],
)
def test_broken_config_names_the_key(old: str, new: str, expected: str) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE.replace(old, new, 1), PATH)
    assert expected in str(caught.value)
    assert str(PATH) in str(caught.value)


def test_rabbitmq_users_are_named_for_the_area_unless_the_config_names_a_prefix() -> None:
    assert parse_config(BASE, PATH).broker_user_prefix == "mash-demo-"
    other = BASE.replace('id = "demo"', 'id = "north-yorks"', 1)
    assert parse_config(other, PATH).broker_user_prefix == "mash-north-yorks-"
    named = BASE.replace('/mash-demo"\n', '/mash-demo"\nuser_prefix = "ny."\n', 1)
    assert parse_config(named, PATH).broker_user_prefix == "ny."


def test_agreement_ending_before_it_starts_is_refused() -> None:
    broken = BASE.replace("valid_until = 2028-11-23", "valid_until = 2020-01-01", 1)
    with pytest.raises(ConfigError, match=r"agreements\[0\].valid_until: is before valid_from"):
        parse_config(broken, PATH)


def test_gateway_cannot_be_party_to_an_agreement() -> None:
    broken = BASE.replace('recipients = ["hub"]', 'recipients = ["gateway"]', 1)
    with pytest.raises(ConfigError, match=r"agreements\[0\].recipients: unknown value 'gateway'"):
        parse_config(broken, PATH)


def test_unknown_recipient_in_agreement_is_refused() -> None:
    broken = BASE.replace('recipients = ["hub"]', 'recipients = ["fire"]', 1)
    with pytest.raises(ConfigError, match=r"agreements\[0\].recipients: unknown value 'fire'"):
        parse_config(broken, PATH)


def test_key_whose_id_does_not_match_its_public_key_is_refused() -> None:
    block = (
        '\n[[keys]]\nagency = "police"\nuse = "sign"\nkey_id = "police.sign.0000000000000000"\n'
        'public = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="\n'
        "not_before = 2026-01-01T00:00:00Z\nexpires = 2027-01-01T00:00:00Z\n"
    )
    with pytest.raises(
        ConfigError, match=r"keys\[0\].key_id: 'police.sign.0000000000000000' does not match"
    ):
        parse_config(BASE + block, PATH)


def test_key_without_zone_is_refused() -> None:
    raw = b"\x01" * 32
    block = (
        f'\n[[keys]]\nagency = "police"\nuse = "sign"\n'
        f'key_id = "{key_id_for("police", KeyUse.SIGN, raw)}"\n'
        f'public = "{base64.b64encode(raw).decode()}"\n'
        "not_before = 2026-01-01T00:00:00\nexpires = 2027-01-01T00:00:00Z\n"
    )
    with pytest.raises(ConfigError, match=r"keys\[0\].not_before: must be a date-time with a zone"):
        parse_config(BASE + block, PATH)


def test_revocation_of_unknown_key_is_refused() -> None:
    block = (
        '\n[[revocations]]\nkey_id = "police.sign.1111111111111111"\n'
        'revoked_at = 2026-02-01T00:00:00Z\nreason = "lost"\n'
    )
    with pytest.raises(ConfigError, match="revocations: revokes unknown key id"):
        parse_config(BASE + block, PATH)


def test_invalid_toml_names_line() -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        parse_config('[area]\nid = "demo\n', PATH)


def test_deadlines_default_when_absent_and_errors_name_the_key() -> None:
    config = parse_config(BASE, PATH)
    assert set(config.deadlines.response) == {"Red", "Amber", "Green"}
    broken = BASE + '\n[deadlines.rag.Purple]\nduration = "4h"\n'
    with pytest.raises(ConfigError, match=r"deadlines\.rag\.Purple: unknown RAG rating"):
        parse_config(broken, PATH)
    negative = BASE + '\n[deadlines.rag.Red]\nduration = "-4h"\n'
    with pytest.raises(ConfigError, match=r"deadlines\.rag\.Red"):
        parse_config(negative, PATH)


def test_an_escalation_contact_at_an_unknown_agency_is_refused() -> None:
    contact = '\n[[deadlines.contacts]]\nrole = "Manager"\nagency = "fire"\nemail = "m@fire.ex"\n'
    with pytest.raises(ConfigError, match=r"deadlines.contacts\[0\].agency: 'fire' is not one of"):
        parse_config(BASE + contact, PATH)
