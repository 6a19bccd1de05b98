"""Quarantine's pure rules: why a copy is there, what may be done with it, and its config."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.config.area_config import ConfigError
from gateway.config.quarantine_config import parse_quarantine
from gateway.core.quarantine import (
    DEAD_LETTER_CHECK,
    Cause,
    Entry,
    Facts,
    Policy,
    Status,
    Totals,
    cause_of,
    discard_refusal,
    expiry_cutoff,
    facts_of,
    release_refusal,
    room_for,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ENTRY = Entry(
    entry_id="e1",
    facts=Facts("m-1", "CASE-1", "Referral", "police", ("education",), T0),
    cause=Cause("policy", "no agreement", "router"),
    quarantined_at=T0,
    size=10,
    body_sha256="0" * 64,
)
AGENCIES = ("education", "police")


def fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"gateway.toml: {key}: {problem}")


def test_the_routers_reason_header_names_the_check() -> None:
    headers = {"x-mash-quarantine-reason": "policy: no agreement lets police send Referral"}
    assert cause_of(headers) == Cause("policy", "no agreement lets police send Referral", "router")


def test_a_dead_lettered_copy_names_its_queue() -> None:
    cause = cause_of(
        {"x-first-death-queue": "agency.police.inbox", "x-first-death-reason": "delivery_limit"}
    )
    assert (cause.check, cause.source) == (DEAD_LETTER_CHECK, "agency.police.inbox")
    assert "agency.police.inbox" in cause.reason


def test_a_copy_with_no_reason_is_still_kept_as_unknown() -> None:
    assert cause_of({}).check == "unknown"


def test_an_unreadable_body_keeps_the_brokers_message_id() -> None:
    assert facts_of(b"not an envelope", "m-9") == Facts("m-9", None, None, None, (), None)


def test_a_held_entry_may_be_released_or_discarded_once() -> None:
    assert release_refusal(ENTRY, AGENCIES) is None and discard_refusal(ENTRY) is None
    released = replace(ENTRY, status=Status.RELEASED, settled_at=T0, settled_by="alice")
    assert "already released at 2026-12-02T09:00:00+00:00 by alice" in (
        release_refusal(released, AGENCIES) or ""
    )
    discarded = replace(
        ENTRY, status=Status.DISCARDED, settled_at=T0, settled_by="bob", settle_reason="dup"
    )
    refusal = release_refusal(discarded, AGENCIES) or ""
    assert "discarded at" in refusal and "by bob (dup)" in refusal
    assert "cannot be released" in refusal
    expired = replace(ENTRY, status=Status.EXPIRED, settled_at=T0, settled_by="retention")
    assert "expired" in (discard_refusal(expired) or "")


def test_a_copy_is_released_only_to_an_agencys_own_ingress() -> None:
    stranger = replace(ENTRY, facts=replace(ENTRY.facts, sender="mallory"))
    assert "claims sender 'mallory', not an agency of this area" in (
        release_refusal(stranger, AGENCIES) or ""
    )
    unreadable = replace(ENTRY, facts=facts_of(b"not an envelope", "m-9"))
    assert "names no sender" in (release_refusal(unreadable, AGENCIES) or "")


def test_the_limits_stop_taking_before_either_is_passed() -> None:
    policy = Policy(max_messages=2, max_bytes=100)
    assert room_for(Totals(1, 99), policy)
    assert not room_for(Totals(2, 0), policy)
    assert not room_for(Totals(0, 100), policy)
    assert expiry_cutoff(T0, Policy(retention=timedelta(days=3))) == T0 - timedelta(days=3)


def test_the_config_table_is_optional_and_checked() -> None:
    assert parse_quarantine(None, fail) == Policy()
    parsed = parse_quarantine({"retention_days": 7, "max_messages": 5}, fail)
    assert parsed == Policy(retention=timedelta(days=7), max_messages=5)
    with pytest.raises(ConfigError, match=r"quarantine\.max_bytes: 0 must be a whole number"):
        parse_quarantine({"max_bytes": 0}, fail)
    with pytest.raises(ConfigError, match=r"quarantine\.retention: unknown key"):
        parse_quarantine({"retention": 7}, fail)
