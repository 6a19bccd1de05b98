"""The console's pure and file-only parts: operator records on the audit chain, key and
agreement validity, local accounts, sessions' expiry."""

from __future__ import annotations

import json
import stat
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.console.accounts import AccountError, Accounts, Role
from gateway.console.operator_audit import as_action
from gateway.console.readiness import ServiceError, parse_service, summary
from gateway.console.sessions import IDLE, LONGEST, Sessions
from gateway.console.throttle import LIMIT, WINDOW, SignInThrottle
from gateway.core.audit_chain import (
    GENESIS,
    OperatorAction,
    Problem,
    checkpoint_link,
    decision_link,
    operator_link,
    verify,
)
from gateway.core.sharing import Agreement
from gateway.views.validity import agreement_status, days_left
from tests.unit.test_audit_chain import GATEWAY, T0, decision, registry, signer

pytestmark = pytest.mark.unit

ACTION = OperatorAction("olive", "operator", "sign-in")


def chain_with_an_operator_record() -> list[str]:
    first = decision_link(GENESIS, T0, decision(1))
    second = operator_link(first.head, T0, ACTION)
    closing = checkpoint_link(second.head, T0, signer())
    return [first.line, second.line, closing.line]


def test_operator_records_chain_and_verify_like_decisions() -> None:
    lines = chain_with_an_operator_record()
    result = verify(lines, registry(), GATEWAY)
    assert result.finding is None and result.records == 2
    record = json.loads(lines[1])
    assert (record["kind"], record["operator"], record["action"]) == (
        "operator",
        "olive",
        "sign-in",
    )


def test_an_edited_operator_record_is_found() -> None:
    lines = chain_with_an_operator_record()
    lines[1] = lines[1].replace('"olive"', '"mallory"')
    finding = verify(lines, registry(), GATEWAY).finding
    assert finding is not None and finding.line == 2 and finding.problem is Problem.EDITED


def test_an_operators_decision_shows_as_an_action_and_the_routers_not_at_all() -> None:
    released = {**json.loads(decision_link(GENESIS, T0, decision(1)).line), "operator": "olive"}
    released["outcome"] = "released"
    shown = as_action(released)
    assert shown is not None
    assert (shown["operator"], shown["action"], shown["target"]) == (
        "olive",
        "quarantine released",
        released["message_id"],
    )
    assert as_action(json.loads(decision_link(GENESIS, T0, decision(1)).line)) is None
    operator = json.loads(operator_link(GENESIS, T0, ACTION).line)
    assert as_action(operator) == operator


def test_services_are_named_with_their_readyz_and_answers_summed_up() -> None:
    assert parse_service("router=http://router:9464/readyz") == (
        "router",
        "http://router:9464/readyz",
    )
    for bad in ("router", "=http://x/readyz", "router=ftp://x", "router=router:9464"):
        with pytest.raises(ServiceError, match="NAME=URL"):
            parse_service(bad)
    ready = json.dumps({"ready": True, "checks": {"broker": "ok", "store": "ok"}})
    assert summary(True, ready) == "ok"
    failing = {"broker": "not connected to RabbitMQ (reconnecting)", "store": "ok"}
    not_ready = json.dumps({"ready": False, "checks": failing})
    assert summary(False, not_ready) == "broker: not connected to RabbitMQ (reconnecting)"
    assert summary(False, "http://x/readyz: no answer (refused)") == (
        "http://x/readyz: no answer (refused)"
    )
    assert len(summary(False, "<html>" + "x" * 1000)) == 200  # someone else's page, cut short


def test_validity_of_agreements_and_days_left() -> None:
    agreement = Agreement(
        "isa-1", frozenset(), frozenset(), frozenset(), frozenset(), frozenset(),
        date(2026, 1, 1), date(2026, 12, 31),
    )  # fmt: skip
    assert agreement_status(agreement, date(2025, 12, 31)) == "not yet in force"
    assert agreement_status(agreement, date(2026, 12, 31)) == "in force"  # the last day counts
    assert agreement_status(agreement, date(2027, 1, 1)) == "expired"
    assert days_left(T0 + timedelta(days=3, hours=1), T0) == 3
    assert days_left(T0 - timedelta(hours=1), T0) == -1


def test_accounts_hash_with_argon2id_in_a_private_file(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "state" / "users.json")
    password = accounts.add("sam", Role.OPERATOR)
    assert len(password) >= 20
    assert stat.S_IMODE(accounts.path.stat().st_mode) == 0o600
    assert password not in accounts.path.read_text()
    assert json.loads(accounts.path.read_text())["sam"]["hash"].startswith("$argon2id$")
    found = accounts.check("sam", password)
    assert found is not None and found.role is Role.OPERATOR
    assert accounts.check("sam", password + "x") is None
    assert accounts.check("nobody", password) is None
    with pytest.raises(AccountError, match="at least 12"):
        accounts.add("kim", Role.VIEWER, "short")
    with pytest.raises(AccountError, match="account name"):
        accounts.add("Kim Smith", Role.VIEWER)


def test_a_broken_accounts_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"sam": {"role": "root", "hash": "x"}}')
    with pytest.raises(AccountError, match="not a console accounts file"):
        Accounts(path).check("sam", "whatever-password")


def test_sessions_end_when_idle_or_too_old() -> None:
    sessions = Sessions()
    session = sessions.start(T0)
    assert sessions.find(session.id, T0 + IDLE - timedelta(seconds=1)) is session
    assert sessions.find(session.id, T0 + 2 * IDLE) is None  # idle too long: ended
    kept = sessions.start(T0)
    at = T0
    while at < T0 + LONGEST - IDLE:
        at += IDLE / 2
        assert sessions.find(kept.id, at) is kept  # active keeps it alive...
    assert (
        sessions.find(kept.id, T0 + LONGEST + timedelta(seconds=1)) is None
    )  # ...but not past 12 h
    assert sessions.find(None, T0) is None
    assert session.token_matches(session.csrf) and not session.token_matches("forged")
    assert not session.token_matches(None)


def test_failed_sign_ins_from_one_address_are_refused_until_they_age_out() -> None:
    throttle = SignInThrottle()
    for n in range(LIMIT):
        assert not throttle.refused("192.0.2.7", T0 + timedelta(seconds=n))
        throttle.failed("192.0.2.7", T0 + timedelta(seconds=n))
    assert throttle.refused("192.0.2.7", T0 + timedelta(minutes=1))
    assert not throttle.refused("192.0.2.8", T0 + timedelta(minutes=1))  # per address
    assert not throttle.refused("192.0.2.7", T0 + WINDOW + timedelta(seconds=1))  # aged out
    throttle.failed("192.0.2.9", T0)
    throttle.succeeded("192.0.2.9")
    assert not throttle.refused("192.0.2.9", T0)


def test_a_one_time_account_signs_in_once(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "users.json")
    password = accounts.add("demo-operator", Role.OPERATOR, once=True)
    assert accounts.check("demo-operator", "wrong password") is None  # a wrong try uses nothing
    found = accounts.check("demo-operator", password)
    assert found is not None and found.role is Role.OPERATOR
    assert accounts.check("demo-operator", password) is None  # never again
    assert accounts.current("demo-operator") == found  # but its one session goes on
