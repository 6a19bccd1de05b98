"""`mash-gateway track` through the real CLI, on a real SQLite store filled via the store API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.lifecycle import Event
from gateway.core.records import MessageRecord, Transition
from gateway.store import store_from_url

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CASE = "CASE-7F3A"
REFERRAL = "0b7c5a34-3f0e-4d43-9a55-7c4f7c1d0a01"
REQUEST = "6d1e2f90-8a3b-4c5d-b6e7-f8091a2b3c02"


def message(
    message_id: str, kind: str, sender: str, to: tuple[str, ...], offset: int
) -> MessageRecord:
    return MessageRecord(
        message_id=message_id,
        correlation_id=CASE,
        in_reply_to=REFERRAL if message_id != REFERRAL else None,
        message_type=kind,
        sender=sender,
        recipients=to,
        rag="Amber",
        deadline=None,
        created_at=T0 + timedelta(seconds=offset),
    )


async def populate(store_url: str) -> None:
    store = store_from_url(store_url)
    await store.open()
    try:
        referral = message(REFERRAL, "Referral", "police", ("hub",), 0)
        await store.admit(referral, "digest-referral", T0)
        await store.advance([Transition(REFERRAL, Event.ROUTED)], T0 + timedelta(seconds=1))
        await store.advance(
            [Transition(REFERRAL, Event.RECEIPTED_POSITIVE, detail="sha256:receipt-digest")],
            T0 + timedelta(seconds=2),
        )
        request = message(REQUEST, "InformationRequest", "hub", ("health", "probation"), 10)
        await store.admit(request, "digest-request", T0 + timedelta(seconds=10))
        await store.advance(
            [Transition(REQUEST, Event.REJECTED, reason="policy: no agreement")],
            T0 + timedelta(seconds=11),
        )
    finally:
        await store.close()


@pytest.fixture
def config_path(tmp_path: Path) -> str:
    area = tmp_path / "area"
    assert main(["init", str(area)]) == 0
    path = str(area / "gateway.toml")
    asyncio.run(populate(load_config(path).store_url))
    return path


def track(config_path: str, *args: str) -> int:
    return main(["--config", config_path, "track", *args])


def test_track_prints_a_messages_timeline_oldest_first(
    config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert track(config_path, REFERRAL) == 0
    out = capsys.readouterr().out
    assert "route:    police -> hub" in out
    assert "state:    delivered" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("2026-")]
    assert rows == [
        ["2026-11-23T09:00:00.000Z", "submitted"],
        ["2026-11-23T09:00:01.000Z", "routed"],
        ["2026-11-23T09:00:02.000Z", "delivered"],
    ]
    assert "receipt-digest" not in out


def test_track_correlation_prints_every_message_of_the_case_with_reasons(
    config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert track(config_path, "--correlation", CASE) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"case {CASE}: 2 messages"
    referral = lines.index(f"Referral {REFERRAL}  police -> hub  [delivered]")
    request = lines.index(
        f"InformationRequest {REQUEST}  hub -> health, probation  [rejected]  reply to {REFERRAL}"
    )
    assert referral < request
    assert [line.split()[1] for line in lines[referral + 1 : referral + 4]] == [
        "submitted",
        "routed",
        "delivered",
    ]
    assert lines[request + 2].split(None, 2)[1:] == ["rejected", "policy: no agreement"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("no-such-id",), "no message 'no-such-id'"),
        (("--correlation", "CASE-NONE"), "no messages with correlation id 'CASE-NONE'"),
    ],
)
def test_an_unknown_id_exits_1_naming_it(
    config_path: str, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    capsys.readouterr()
    assert track(config_path, *args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert expected in captured.err


def messages(config_path: str, *args: str) -> int:
    return main(["--config", config_path, "messages", *args])


def test_messages_pages_newest_first_and_follows_its_cursor(
    config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert messages(config_path, "--json", "--limit", "1") == 0
    first = json.loads(capsys.readouterr().out)
    assert [m["message_id"] for m in first["messages"]] == [REQUEST]
    assert first["messages"][0]["state"] == "rejected"
    assert messages(config_path, "--json", "--limit", "1", "--after", first["next"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert [m["message_id"] for m in second["messages"]] == [REFERRAL]
    assert second["next"] is None

    assert messages(config_path, "--agency", "probation", "--state", "rejected") == 0
    out = capsys.readouterr().out
    assert REQUEST in out and REFERRAL not in out and "1 shown, newest first; no more" in out
    assert messages(config_path, "--case", CASE, "--type", "Referral", "--json") == 0
    assert [m["sender"] for m in json.loads(capsys.readouterr().out)["messages"]] == ["police"]
    assert messages(config_path, "--from", "2026-11-24") == 0
    assert capsys.readouterr().out.strip() == "no messages match"


def test_messages_refuses_a_cursor_it_did_not_print(
    config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert messages(config_path, "--after", "not-a-cursor") == 1
    assert "--after 'not-a-cursor' is not a cursor `messages` printed" in capsys.readouterr().err


def test_track_json_gives_the_same_story_for_scripts(
    config_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert track(config_path, REFERRAL, "--json") == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["message_id"], one["state"]) == (REFERRAL, "delivered")
    assert [t["state"] for t in one["timeline"]] == ["submitted", "routed", "delivered"]
    assert track(config_path, "--correlation", CASE, "--json") == 0
    case = json.loads(capsys.readouterr().out)
    assert [m["message_id"] for m in case["messages"]] == [REFERRAL, REQUEST]
    assert case["messages"][1]["timeline"][-1]["reason"] == "policy: no agreement"
    assert case["deadlines"] == []
