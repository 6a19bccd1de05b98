"""The [intake] table: defaults, paths, and errors that name the key path."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.config.intake_config import (
    Authentication,
    DkimKey,
    DomainRule,
    Policy,
    Staff,
    parse_intake,
)
from gateway.core.errors import GatewayError

pytestmark = pytest.mark.unit

AGENCIES = frozenset({"hub", "police", "health"})
FPR = "6C82CB0123456789ABCDEF0123456789ABCDEFCC"


def fail(key: str, problem: str) -> GatewayError:
    return GatewayError(f"{key}: {problem}")


def parse(doc: dict[str, Any]) -> Any:
    return parse_intake({"hostname": "intake.demo.example", **doc}, fail, Path("/area"), AGENCIES)


def test_absent_table_means_no_intake() -> None:
    assert parse_intake(None, fail, Path("/area"), AGENCIES) is None


def test_defaults_are_safe_and_paths_are_anchored_at_the_area() -> None:
    config = parse({})
    assert (config.host, config.port, config.mailboxes) == ("127.0.0.1", 8025, {"hub"})
    assert config.tls_key == Path("/area/keys/private/intake/tls.key")
    assert config.gnupg_home == Path("/area/keys/private/gnupg")
    assert config.max_message_bytes == 10 * 1024 * 1024 and config.relay is None


def test_staff_pins_are_normalised() -> None:
    config = parse(
        {
            "domains": [
                {
                    "domain": "Police.Demo.Example",
                    "agency": "police",
                    "policy": "pgp",
                    "staff": [
                        {"address": "PC.Smith@police.demo.example", "fingerprint": FPR.lower()}
                    ],
                }
            ]
        }
    )
    rule = config.rule_for("police.demo.example")
    assert rule.policy is Policy.PGP
    assert rule.staff == (Staff("pc.smith@police.demo.example", FPR),)
    assert rule.staff_by_fingerprint(FPR.lower()) == rule.staff[0]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"listen": "8025"}, "intake.listen"),
        ({"max_message_bytes": 0}, "intake.max_message_bytes"),
        ({"mailboxes": ["nobody"]}, "intake.mailboxes[0]: 'nobody' is not one of the agencies"),
        ({"max_conections": 3}, "intake.max_conections: unknown key"),
        (
            {"domains": [{"domain": "p.example", "agency": "police", "policy": "smime"}]},
            "intake.domains[0].policy",
        ),
        (
            {"domains": [{"domain": "p.example", "agency": "ghost", "policy": "tls"}]},
            "intake.domains[0].agency",
        ),
        (
            {
                "domains": [
                    {"domain": "p.example", "agency": "police", "policy": "pgp"},
                    {"domain": "P.example", "agency": "health", "policy": "pgp"},
                ]
            },
            "intake.domains[1].domain: 'p.example' appears twice",
        ),
        (
            {
                "domains": [
                    {
                        "domain": "p.example",
                        "agency": "police",
                        "policy": "pgp",
                        "staff": [{"address": "x@other.example", "fingerprint": FPR}],
                    }
                ]
            },
            "intake.domains[0].staff[0].address",
        ),
        (
            {
                "domains": [
                    {
                        "domain": "p.example",
                        "agency": "police",
                        "policy": "pgp",
                        "staff": [{"address": "x@p.example", "fingerprint": "ABCD"}],
                    }
                ]
            },
            "intake.domains[0].staff[0].fingerprint",
        ),
        ({"relay": {"host": "r", "port": 99999, "sender": "a@b.example"}}, "intake.relay.port"),
    ],
)
def test_errors_name_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(doc)


def rsa_public_key(bits: int) -> str:
    """The p= value of a DKIM record for a fresh RSA key of ``bits``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


PIN = ":".join(["3F", "9A", *["AB"] * 28, "07", "C1"])  # as openssl x509 -fingerprint prints it


def tls_domain(**settings: Any) -> dict[str, Any]:
    return {"domains": [{"domain": "h.example", "agency": "health", "policy": "tls", **settings}]}


def test_limits_and_replay_settings_have_safe_defaults() -> None:
    config = parse({})
    assert config.max_recipients == 100  # RFC 5321 section 4.5.3.1.8's minimum
    assert config.replay_window == timedelta(days=14)
    assert config.replay_store == Path("/area/state/intake-replay.db")


def test_a_tls_domain_names_how_it_is_authenticated_and_its_pins_are_normalised() -> None:
    public_key = rsa_public_key(2048)
    config = parse(
        tls_domain(
            authenticate=["dkim", "client-certificate"],
            dkim_keys=[{"selector": "Mail2026", "public_key": public_key}],
            client_ca="keys/partners/health-ca.pem",
            client_certificates=[PIN.lower()],
        )
    )
    rule = config.rule_for("h.example")
    assert rule.authenticate == {Authentication.DKIM, Authentication.CLIENT_CERTIFICATE}
    assert rule.dkim_keys == (DkimKey("mail2026", public_key, "rsa"),)
    assert rule.dkim_keys[0].record == f"v=DKIM1; k=rsa; p={public_key}"
    assert rule.client_ca == Path("/area/keys/partners/health-ca.pem")
    assert rule.client_certificates == {PIN.replace(":", "")}


def test_an_ed25519_dkim_key_is_32_bytes() -> None:
    key = base64.b64encode(b"\x01" * 32).decode()
    config = parse(
        tls_domain(
            authenticate=["dkim"],
            dkim_keys=[{"selector": "ed", "public_key": key, "key_type": "ed25519"}],
        )
    )
    assert config.rule_for("h.example").dkim_keys[0].record == f"v=DKIM1; k=ed25519; p={key}"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "intake.domains[0].authenticate: missing: a 'tls' domain's mail must be authent"),
        ({"authenticate": []}, "intake.domains[0].authenticate: must be a non-empty array"),
        ({"authenticate": ["tls"]}, "intake.domains[0].authenticate[0]: 'tls' must be one of"),
        ({"authenticate": ["dkim", "dkim"]}, "intake.domains[0].authenticate[1]: 'dkim' appears"),
        (
            {"authenticate": ["client-certificate"]},
            "intake.domains[0].client_certificates: missing",
        ),
        (
            {"authenticate": ["client-certificate"], "client_certificates": ["AB:CD"]},
            "intake.domains[0].client_certificates[0]: must be a certificate's SHA-256",
        ),
        (
            {"authenticate": ["dkim"], "client_certificates": [PIN]},
            "intake.domains[0].client_certificates: set, but authenticate does not name",
        ),
        (
            {"authenticate": ["client-certificate"], "client_certificates": [PIN], "dkim_keys": []},
            "intake.domains[0].dkim_keys: set, but authenticate does not name 'dkim'",
        ),
        (
            {"authenticate": ["dkim"], "dkim_keys": [{"selector": "a b", "public_key": "AAAA"}]},
            "intake.domains[0].dkim_keys[0].selector: 'a b' is not a DKIM selector",
        ),
        (
            {"authenticate": ["dkim"], "dkim_keys": [{"selector": "s", "public_key": "n0t!"}]},
            "intake.domains[0].dkim_keys[0].public_key: must be the base64 p= value",
        ),
        (
            {
                "authenticate": ["dkim"],
                "dkim_keys": [{"selector": "s", "public_key": "AAAA", "key_type": "dsa"}],
            },
            "intake.domains[0].dkim_keys[0].key_type: 'dsa' must be 'rsa' or 'ed25519'",
        ),
        (
            {
                "authenticate": ["dkim"],
                "dkim_keys": [{"selector": "s", "public_key": "AAAA", "key_type": "ed25519"}],
            },
            "intake.domains[0].dkim_keys[0].public_key: an ed25519 DKIM key is 32 bytes",
        ),
    ],
)
def test_tls_domain_authentication_errors_name_the_key(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(GatewayError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(tls_domain(**settings))


def test_a_weak_rsa_dkim_key_is_refused() -> None:
    weak = {"selector": "old", "public_key": rsa_public_key(1024)}
    with pytest.raises(GatewayError, match=r"a 1024-bit RSA key is too weak; 2048 bits or more"):
        parse(tls_domain(authenticate=["dkim"], dkim_keys=[weak]))


@pytest.mark.parametrize("name", ["authenticate", "dkim_keys", "client_ca", "client_certificates"])
def test_a_pgp_domain_takes_no_tls_authentication(name: str) -> None:
    domain = {"domain": "p.example", "agency": "police", "policy": "pgp", name: ["dkim"]}
    with pytest.raises(GatewayError, match=rf"intake.domains\[0\].{name}: only for policy 'tls'"):
        parse({"domains": [domain]})


def test_no_rule_can_make_an_anonymous_tls_domain() -> None:
    with pytest.raises(ValueError, match="must name how its mail is authenticated"):
        DomainRule("h.example", "health", Policy.TLS, ())
    with pytest.raises(ValueError, match="pins no certificate"):
        DomainRule(
            "h.example",
            "health",
            Policy.TLS,
            (),
            authenticate=frozenset({Authentication.CLIENT_CERTIFICATE}),
        )
