"""What `mash-gateway track` shows: order, states, times, reasons; nothing a terminal obeys."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.core.envelope import SealedAttachment
from gateway.core.lifecycle import State
from gateway.core.records import MessageRecord, TimelineEntry
from gateway.views.timeline import case_view, message_view, printable, timestamp
from gateway.views.track_json import message_json

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)


def record(
    message_id: str,
    message_type: str = "Referral",
    sender: str = "police",
    recipients: tuple[str, ...] = ("hub",),
    state: State = State.SUBMITTED,
    in_reply_to: str | None = None,
) -> MessageRecord:
    return MessageRecord(
        message_id=message_id,
        correlation_id="CASE-1",
        in_reply_to=in_reply_to,
        message_type=message_type,
        sender=sender,
        recipients=recipients,
        rag="Red",
        deadline=None,
        created_at=T0,
        state=state,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_timestamps_are_utc_to_the_millisecond() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert timestamp(T0.astimezone(plus_one)) == "2026-11-23T09:00:00.123Z"


def test_message_view_lists_facts_then_transitions_oldest_first_with_reasons() -> None:
    message = record("m-1", state=State.REJECTED, recipients=("hub", "csc"))
    timeline = [
        TimelineEntry("m-1", State.REJECTED, at(2), "policy: no agreement", "sha256:abc"),
        TimelineEntry("m-1", State.SUBMITTED, at(0)),
        TimelineEntry("m-1", State.ROUTED, at(1)),
    ]
    lines = message_view(message, timeline).splitlines()
    assert lines[:6] == [
        "message:  m-1",
        "type:     Referral",
        "route:    police -> hub, csc",
        "case:     CASE-1",
        "state:    rejected",
        "",
    ]
    rows = [line.split() for line in lines[7:]]
    assert rows == [
        ["2026-11-23T09:00:00.123Z", "submitted"],
        ["2026-11-23T09:00:01.123Z", "routed"],
        ["2026-11-23T09:00:02.123Z", "rejected", "policy:", "no", "agreement"],
    ]


def test_transition_detail_is_never_shown() -> None:
    timeline = [TimelineEntry("m-1", State.DELIVERED, at(0), None, "sha256:secretish")]
    assert "sha256" not in message_view(record("m-1"), timeline)


def test_case_view_groups_each_messages_transitions_under_it() -> None:
    referral = record("m-1", state=State.DELIVERED)
    request = record(
        "m-2", "InformationRequest", "hub", ("health", "csc"), State.ROUTED, in_reply_to="m-1"
    )
    timeline = [
        TimelineEntry("m-1", State.SUBMITTED, at(0)),
        TimelineEntry("m-1", State.ROUTED, at(1)),
        TimelineEntry("m-2", State.SUBMITTED, at(2)),
        TimelineEntry("m-1", State.DELIVERED, at(3)),
        TimelineEntry("m-2", State.ROUTED, at(4)),
    ]
    assert case_view("CASE-1", [referral, request], timeline).splitlines() == [
        "case CASE-1: 2 messages",
        "",
        "Referral m-1  police -> hub  [delivered]",
        "  2026-11-23T09:00:00.123Z  submitted",
        "  2026-11-23T09:00:01.123Z  routed",
        "  2026-11-23T09:00:03.123Z  delivered",
        "",
        "InformationRequest m-2  hub -> health, csc  [routed]  reply to m-1",
        "  2026-11-23T09:00:02.123Z  submitted",
        "  2026-11-23T09:00:04.123Z  routed",
    ]


def test_transitions_at_the_same_instant_keep_their_recorded_order() -> None:
    timeline = [
        TimelineEntry("m-1", State.SUBMITTED, at(0)),
        TimelineEntry("m-1", State.REJECTED, at(0), "signature"),
    ]
    out = message_view(record("m-1"), timeline)
    assert out.index("submitted") < out.index("rejected")


@pytest.mark.parametrize("hostile", ["\x1b[2J", "\n", "\r", "\u202e", "\x00"])
def test_control_and_bidi_characters_cannot_reach_the_terminal(hostile: str) -> None:
    def views(text: str) -> list[str]:
        message = record(f"m{text}1", sender=f"police{text}")
        timeline = [TimelineEntry(message.message_id, State.REJECTED, at(0), f"bad{text}reason")]
        return [message_view(message, timeline), case_view(f"C{text}", [message], timeline)]

    for out, benign in zip(views(hostile), views("-"), strict=True):
        assert len(out.splitlines()) == len(benign.splitlines())
        assert all(line.isprintable() for line in out.splitlines())
    assert "?" in printable(hostile)


def test_printable_replaces_only_what_a_terminal_would_obey() -> None:
    assert printable("a\x1b[2Jb\u202ec") == "a?[2Jb?c"
    assert printable("Référence-42 Ōtautahi") == "Référence-42 Ōtautahi"


def test_a_routed_receipt_shows_as_forwarded_not_stuck() -> None:
    receipt = replace(record("r-1"), message_type="DeliveryReceipt", state=State.ROUTED)
    line = case_view("CASE-1", [receipt], []).splitlines()[2]
    assert line.endswith("[forwarded]")
    pending = replace(record("m-9"), state=State.ROUTED)
    assert case_view("CASE-1", [pending], []).splitlines()[2].endswith("[routed]")


def test_a_message_with_files_shows_each_sealed_size_and_digest_never_a_name() -> None:
    sections = (SealedAttachment("ab" * 32, 2048), SealedAttachment("cd" * 32, 100))
    message = replace(record("m-1"), attachments=sections)
    text = message_view(message, [TimelineEntry("m-1", State.SUBMITTED, at(0))])
    assert "files:    2 (2148 bytes)" in text.splitlines()
    assert f"  1  2048 bytes sealed  SHA-256 {'ab' * 32}" in text.splitlines()
    assert "files 2 (2148 bytes)" in case_view("CASE-1", [message], [])
    tracked = json.loads(message_json(message, []))
    assert tracked["attachments"] == [
        {"ciphertext_length": 2048, "ciphertext_sha256": "ab" * 32},
        {"ciphertext_length": 100, "ciphertext_sha256": "cd" * 32},
    ]
    assert json.loads(message_json(record("m-2"), []))["attachments"] == []
