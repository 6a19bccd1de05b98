"""The performance figures: volumes, timeliness, breaches, failures and repeat referrals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.deadline_rules import Deadline, Kind
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord, TimelineEntry
from gateway.core.resources import schemas_dir
from gateway.core.xmlsafe import parse
from gateway.views import report, report_formats

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=3)


def message(message_id: str, kind: str, sender: str, *recipients: str) -> MessageRecord:
    return MessageRecord(message_id, "case", None, kind, sender, recipients, None, None, T0)


def deadline(debtor: str, rag: str | None, hours_taken: float | None, due_hours: float) -> Deadline:
    closed = None if hours_taken is None else T0 + timedelta(hours=hours_taken)
    return Deadline(
        deadline_id=f"m/{debtor}/{rag}/{hours_taken}",
        message_id="m",
        correlation_id="case",
        kind=Kind.RESPONSE if rag else Kind.DELIVERY,
        debtor=debtor,
        creditor="hub",
        rag=rag,
        started_at=T0,
        due_at=T0 + timedelta(hours=due_hours),
        next_at=None,
        closed_at=closed,
        breached=closed is not None and hours_taken is not None and hours_taken > due_hours,
    )


def test_volumes_count_sent_and_received_per_type_and_agency_without_receipts() -> None:
    messages = [
        message("r1", "Referral", "police", "hub"),
        message("q1", "InformationRequest", "hub", "health", "csc"),
        message("d1", "DeliveryReceipt", "health", "hub"),
    ]
    figures = {(v.message_type, v.agency): (v.sent, v.received) for v in report.volumes(messages)}
    assert figures == {
        ("Referral", "police"): (1, 0),
        ("Referral", "hub"): (0, 1),
        ("InformationRequest", "hub"): (1, 0),
        ("InformationRequest", "health"): (0, 1),
        ("InformationRequest", "csc"): (0, 1),
    }


def test_timeliness_counts_on_time_late_and_overdue_with_median_and_p90() -> None:
    owed = [
        deadline("health", "Red", 1.0, 4),
        deadline("health", "Red", 3.0, 4),
        deadline("health", "Red", 6.0, 4),  # late
        deadline("health", "Red", None, 4),  # still open, overdue at NOW
        deadline("police", "Red", None, 100),  # open, not yet due
    ]
    by_agency = {t.agency: t for t in report.timeliness(owed, NOW)}
    health = by_agency["health"]
    assert (health.owed, health.on_time, health.late, health.overdue) == (4, 2, 1, 1)
    assert health.median_hours == 3.0 and health.p90_hours == pytest.approx(5.4)
    police = by_agency["police"]
    assert (police.owed, police.overdue, police.median_hours) == (1, 0, None)
    assert report.breaches_by_rag(owed, NOW) == {"Red": 2}


def test_failures_name_the_check_and_sender() -> None:
    messages = [message("a", "Referral", "police", "hub"), message("b", "Referral", "csc", "hub")]
    rejections = [
        TimelineEntry("a", State.REJECTED, T0, "agreement: no agreement allows police to hub"),
        TimelineEntry("b", State.REJECTED, T0, "negative receipt from hub: payload-schema"),
        TimelineEntry("gone", State.REJECTED, T0, "inbox-unavailable: full"),
    ]
    assert report.failures(rejections, messages) == (
        report.Failure("agreement", "police", 1),
        report.Failure("inbox-unavailable", "unknown", 1),
        report.Failure("payload-schema", "csc", 1),
    )


def test_repeat_referrals_match_identifiers_within_the_window_and_never_names() -> None:
    example = parse((schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes(), "ex")
    child, unidentified = report.referral_subjects(example)
    assert {"nhs-number::9434765870", "local:Elmfield MIS:PUP-00412"} <= child
    assert not any("JAMIE" in key for key in child) and unidentified == frozenset()
    by_nhs = frozenset({"nhs-number::9434765870"})
    by_upn = frozenset({"upn::B801200005001"})  # the same child, known to another agency by UPN
    other = frozenset({"nhs-number::9434765919"})
    referrals = [
        (T0, (child,)),
        (T0 + timedelta(days=10), (by_nhs,)),  # a repeat within 28 days
        (T0 + timedelta(days=12), (by_upn, other)),  # the same child again, matched by UPN
        (T0 + timedelta(days=60), (by_nhs,)),  # 48 days after the last: not a repeat
        (T0 + timedelta(days=2), (frozenset(),)),  # no identifiers: not counted
    ]
    assert report.repeat_referrals(referrals, 28) == report.Repeats(28, 4, 2, 1)


def test_every_format_carries_every_section() -> None:
    built = report.build(
        T0,
        NOW,
        NOW,
        [message("r1", "Referral", "police", "hub")],
        [deadline("health", "Amber", 30.0, 24)],
        [],
        report.Repeats(28, 3, 1, 1),
    )
    text = report_formats.render(built, "text")
    for heading in (
        "volumes:",
        "timeliness:",
        "breaches by rag:",
        "delivery failures:",
        "repeat referrals:",
    ):
        assert heading in text
    csv_lines = report_formats.render(built, "csv").splitlines()
    assert csv_lines[0].startswith("section,") and any(
        line.startswith("repeat_referrals,") for line in csv_lines
    )
    assert '"breaches_by_rag": [\n    {\n      "rag": "Amber"' in report_formats.render(
        built, "json"
    )
    empty = replace(built, failures=())
    assert "delivery failures:\n  none" in report_formats.render(empty, "text")
