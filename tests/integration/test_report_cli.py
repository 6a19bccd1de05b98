"""`mash-gateway report` on a real area store and a hub folder of received referrals."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.lifecycle import Event
from gateway.core.records import MessageRecord, Transition
from gateway.core.resources import schemas_dir
from gateway.infra.clock import utc_now
from gateway.store import store_from_url

pytestmark = pytest.mark.integration

REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
PERSONAL = ("Jamie", "9434765870", "B801200005001", "Sample Street")


async def record_referrals(config_path: Path, ids: list[str], days_apart: int) -> None:
    config = load_config(str(config_path))
    store = store_from_url(config.store_url)
    await store.open()
    try:
        for n, message_id in enumerate(ids):
            at = utc_now() - timedelta(days=days_apart * (len(ids) - 1 - n))
            record = MessageRecord(
                message_id, f"CASE-{n}", None, "Referral", "police", ("hub",), None, None, at
            )
            await store.admit(record, f"digest-{message_id}", at)
            await store.advance([Transition(message_id, Event.ROUTED)], at)
    finally:
        await store.close()


def test_report_counts_volumes_and_repeat_referrals_without_personal_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "area"), "--broker-url", "amqp://127.0.0.1/x"]) == 0
    config = tmp_path / "area" / "gateway.toml"
    ids = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
    asyncio.run(record_referrals(config, ids, days_apart=3))
    hub_folder = tmp_path / "hub-inbox"
    hub_folder.mkdir()
    for message_id in ids:  # the same child referred twice, three days apart
        (hub_folder / f"{message_id}.xml").write_bytes(REFERRAL)
    (hub_folder / "not-xml.xml").write_bytes(b"\x00 garbage")  # skipped, never fatal

    assert main(["--config", str(config), "report", "--repeats-from", str(hub_folder)]) == 0
    out = capsys.readouterr().out
    assert ["Referral", "police", "2", "0"] in [line.split() for line in out.splitlines()]
    for value in PERSONAL:
        assert value not in out

    assert (
        main(
            [
                "--config",
                str(config),
                "report",
                "--format",
                "json",
                "--repeats-from",
                str(hub_folder),
            ]
        )
        == 0
    )
    figures = json.loads(capsys.readouterr().out)
    assert figures["repeat_referrals"] == [
        {"days": 28, "referrals": 2, "repeat_referrals": 1, "subjects_referred_again": 1}
    ]
    assert {(v["message_type"], v["agency"], v["sent"]) for v in figures["volumes"]} >= {
        ("Referral", "police", 2)
    }


def test_a_reversed_period_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "area"), "--broker-url", "amqp://127.0.0.1/x"]) == 0
    config = str(tmp_path / "area" / "gateway.toml")
    assert main(["--config", config, "report", "--from", "2026-11-20", "--to", "2026-11-01"]) == 1
    assert "--from 2026-11-20 is after --to 2026-11-01" in capsys.readouterr().err
