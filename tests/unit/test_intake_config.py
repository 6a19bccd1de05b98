"""The [intake] table: defaults, paths, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config.intake_config import Policy, Staff, parse_intake
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
                    {"domain": "p.example", "agency": "police", "policy": "tls"},
                    {"domain": "P.example", "agency": "health", "policy": "tls"},
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
