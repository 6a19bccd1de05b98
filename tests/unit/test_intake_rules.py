"""The intake's pure envelope rules: smuggling, allowlist, own addresses only, From domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.intake_config import DomainRule, IntakeConfig, Policy, parse_intake
from gateway.core.errors import GatewayError
from gateway.intake import reply_tokens
from gateway.intake.refusal import Refusal
from gateway.intake.sender_policy import Recipient, addressing, header_from, recipient, sender_rule
from gateway.intake.smuggling import bare_line_break, smuggling_refusal

pytestmark = pytest.mark.unit


def fail(key: str, problem: str) -> GatewayError:
    return GatewayError(f"{key}: {problem}")


def config() -> IntakeConfig:
    parsed = parse_intake(
        {
            "hostname": "Intake.Demo.Example",
            "mailboxes": ["hub"],
            "domains": [
                {"domain": "police.demo.example", "agency": "police", "policy": "pgp"},
                {
                    "domain": "health.demo.example",
                    "agency": "health",
                    "policy": "tls",
                    "authenticate": ["dkim"],
                },
            ],
        },
        fail,
        Path("/area"),
        frozenset({"hub", "police", "health"}),
    )
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"a\r\nb\r\n", None),
        (b"", None),
        (b"a\r\nb\n.\nc\r\n", "bare LF"),
        (b"a\nb", "bare LF"),
        (b"a\r.\rb\r\n", "bare CR"),
        (b"a\r\nb\r", "bare CR"),
        (b"a\r\r\n", "bare CR"),
    ],
)
def test_only_crlf_line_breaks_pass(data: bytes, found: str | None) -> None:
    assert bare_line_break(data) == found


def test_a_smuggling_refusal_is_a_5xx_naming_the_break() -> None:
    refusal = smuggling_refusal(b"x\n.\n")
    assert refusal is not None and refusal.reply.startswith("550 5.6.0")
    assert "bare LF" in refusal.reply


def test_an_allowlisted_domain_gives_its_rule_case_insensitively() -> None:
    rule = sender_rule("PC.Smith@Police.Demo.Example", config())
    assert isinstance(rule, DomainRule) and (rule.agency, rule.policy) == ("police", Policy.PGP)


@pytest.mark.parametrize(
    ("sender", "check"),
    [
        ("someone@gmail.example", "sender-domain"),
        ("x@sub.police.demo.example", "sender-domain"),
        ("", "sender-address"),
        ("no-at-sign", "sender-address"),
    ],
)
def test_unlisted_or_missing_senders_are_refused(sender: str, check: str) -> None:
    refusal = sender_rule(sender, config())
    assert isinstance(refusal, Refusal) and refusal.check == check
    assert refusal.reply.startswith("550 5.7.1")


KEY = b"k" * 32
REQUEST_ID = "6f1c2b1e-8f0a-4c47-9d55-6c1f0b7d2a10"


def rule(domain: str = "health.demo.example") -> DomainRule:
    found = config().rule_for(domain)
    assert found is not None
    return found


def test_own_mailbox_is_accepted() -> None:
    assert recipient("HUB@intake.demo.example", config(), rule(), KEY) == Recipient("hub")


def test_a_reply_token_is_ours_only_for_the_agency_it_was_made_for() -> None:
    token = reply_tokens.ReplyToken(REQUEST_ID, "hub", "health")
    address = f"{reply_tokens.local_part(KEY, token)}@intake.demo.example"
    assert len(address.split("@")[0]) <= 64
    assert recipient(address.upper(), config(), rule(), KEY) == Recipient("hub", token)
    for refused in (
        recipient(address, config(), rule("police.demo.example"), KEY),
        recipient(address, config(), rule(), b"other key" * 4),
        recipient(address, config(), rule(), None),
        recipient(address.replace(".hub.", ".csc."), config(), rule(), KEY),
    ):
        assert isinstance(refused, Refusal) and refused.check == "reply-token"


def test_a_reply_answers_its_request_alone() -> None:
    token = reply_tokens.ReplyToken(REQUEST_ID, "hub", "health")
    reply = Recipient("hub", token)
    assert addressing((reply,), "InformationResponse", None) == (("hub",), REQUEST_ID)
    assert addressing((Recipient("hub"),), "Referral", None) == (("hub",), None)
    checks = {
        "reply-mixed": addressing((reply, Recipient("hub")), "InformationResponse", None),
        "reply-type": addressing((reply,), "Referral", None),
        "reply-request": addressing(
            (reply,), "InformationResponse", "00000000-0000-4000-8000-000000000000"
        ),
    }
    for check, refused in checks.items():
        assert isinstance(refused, Refusal) and refused.check == check


@pytest.mark.parametrize(
    ("rcpt", "status", "check"),
    [
        ("hub@elsewhere.example", "5.7.1", "relay"),
        ("hub@intake.demo.example.evil.example", "5.7.1", "relay"),
        ("police@intake.demo.example", "5.1.1", "mailbox"),
        ("hub@intake.demo.example@elsewhere.example", "5.7.1", "relay"),
    ],
)
def test_everything_else_is_refused(rcpt: str, status: str, check: str) -> None:
    refusal = recipient(rcpt, config(), rule(), KEY)
    assert isinstance(refusal, Refusal) and (refusal.status, refusal.check) == (status, check)


def test_from_must_be_one_address_at_the_envelope_domain() -> None:
    rule = config().rule_for("health.demo.example")
    assert rule is not None
    assert header_from(["Nurse <Nurse@health.demo.example>"], rule) == "nurse@health.demo.example"
    for values in (["x@police.demo.example"], [], ["a@health.demo.example, b@health.demo.example"]):
        refused = header_from(values, rule)
        assert isinstance(refused, Refusal) and refused.status == "5.7.1"
