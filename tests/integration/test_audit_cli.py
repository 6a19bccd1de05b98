"""`mash-gateway audit verify | export` through the CLI, on a real file written by AuditLog.

The area and its keys come from `mash-gateway init`; the log is signed with
the gateway principal's key as the router loads it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.audit_chain import ChainHead, Decision, Outcome, decision_link
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services.audit_log import AuditLog, AuditLogError, GroupCommit, default_path

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)


def decision(n: int) -> Decision:
    rejected = n == 4
    return Decision(
        message_id=f"00000000-0000-4000-8000-{n:012d}",
        correlation_id="CASE-7F3A",
        sender="police",
        message_type="Referral",
        recipients=("hub",),
        purpose="safeguarding-children",
        lawful_bases=("uk-gdpr-6-1-e",),
        header_sha256=f"{n:064x}",
        outcome=Outcome.REJECTED if rejected else Outcome.ROUTED,
        check="policy" if rejected else None,
        reason="=no agreement allows police to send this" if rejected else None,
        agreement_ids=() if rejected else ("isa-police-hub",),
    )


@pytest.fixture
def area(tmp_path: Path) -> tuple[str, AreaConfig, datetime]:
    """An area whose audit log holds 7 decisions over 3 days, checkpointed every 3 and on close."""
    assert main(["init", str(tmp_path / "area")]) == 0
    path = str(tmp_path / "area" / "gateway.toml")
    config = load_config(path)
    start = utc_now() + timedelta(minutes=1)
    log = open_log(config, start)
    for n in range(1, 8):
        log.append(decision(n), start + (n // 3) * DAY)
    log.close(start + 2 * DAY)
    return path, config, start


def open_log(config: AreaConfig, now: datetime) -> AuditLog:
    signer = keystore.load_signing_identity(config, config.gateway, now)
    return AuditLog(default_path(config), signer, checkpoint_every=3)


def audit(config_path: str, *args: str) -> int:
    return main(["--config", config_path, "audit", *args])


def lines_of(config: AreaConfig) -> list[str]:
    return default_path(config).read_text(encoding="utf-8").splitlines()


def write_lines(config: AreaConfig, lines: list[str]) -> None:
    default_path(config).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def test_a_closed_log_verifies(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, _ = area
    assert len(lines_of(config)) == 10  # 7 decisions, checkpoints after 3, 6 and on close
    capsys.readouterr()
    assert audit(path, "verify") == 0
    assert (
        "7 records, 3 gateway-signed checkpoints; chain intact, every record under one"
        in capsys.readouterr().out
    )


def test_an_edited_record_exits_1_naming_its_line(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, _ = area
    lines = lines_of(config)
    lines[4] = lines[4].replace('"outcome":"rejected"', '"outcome":"routed"')
    write_lines(config, lines)
    capsys.readouterr()
    assert audit(path, "verify") == 1
    err = capsys.readouterr().err
    assert "audit.jsonl: line 5: edited: record 5's content does not match its hash" in err


def test_a_removed_record_exits_1_naming_the_gap(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, _ = area
    write_lines(config, [line for n, line in enumerate(lines_of(config), 1) if n != 2])
    capsys.readouterr()
    assert audit(path, "verify", "--file", str(default_path(config))) == 1
    assert "line 2: removed: record 3 follows record 1: 2 missing" in capsys.readouterr().err


def test_a_record_appended_out_of_band_is_reported_unless_live(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, start = area
    last = json.loads(lines_of(config)[-1])
    forged = decision_link(ChainHead(last["seq"], last["hash"]), start, decision(99))
    with default_path(config).open("a", encoding="utf-8") as handle:
        handle.write(forged.line)
    capsys.readouterr()
    assert audit(path, "verify") == 1
    assert "line 11: appended out of band" in capsys.readouterr().err
    assert audit(path, "verify", "--live") == 0


def test_a_revoked_gateway_key_fails_the_checkpoints(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, start = area
    key_id = keystore.load_signing_identity(config, config.gateway, start).key_id
    assert main(["--config", path, "keys", "revoke", key_id, "--reason", "host compromised"]) == 0
    capsys.readouterr()
    assert audit(path, "verify") == 1
    err = capsys.readouterr().err
    assert "line 4: bad checkpoint" in err
    assert "revoked (host compromised)" in err


def test_a_reopened_log_continues_the_chain(area: tuple[str, AreaConfig, datetime]) -> None:
    path, config, start = area
    log = open_log(config, start)
    assert log.head.seq == 10
    log.append(decision(8), start + 2 * DAY)
    log.close(start + 2 * DAY)
    assert audit(path, "verify") == 0
    assert len(lines_of(config)) == 12


def test_checkpoints_after_a_key_rotation_use_the_new_key_and_still_verify(
    area: tuple[str, AreaConfig, datetime],
) -> None:
    path, config, start = area
    log = open_log(config, start)
    assert main(["--config", path, "keys", "rotate", "--agency", config.gateway]) == 0
    rotated = keystore.load_signing_identity(load_config(path), config.gateway, start)
    assert rotated.key_id != json.loads(lines_of(config)[-1])["key_id"]
    log.use_signer(rotated)
    log.append(decision(8), start)
    log.close(start)
    assert json.loads(lines_of(config)[-1])["key_id"] == rotated.key_id
    assert audit(path, "verify") == 0


def test_a_second_writer_is_refused_while_the_first_holds_the_log(
    area: tuple[str, AreaConfig, datetime],
) -> None:
    _, config, start = area
    first = open_log(config, start)
    try:
        with pytest.raises(AuditLogError, match="another process is writing"):
            open_log(config, start)
    finally:
        first.close(start)


def test_a_torn_last_line_is_refused_on_reopening(area: tuple[str, AreaConfig, datetime]) -> None:
    _, config, start = area
    with default_path(config).open("a", encoding="utf-8") as handle:
        handle.write('{"kind":"decision","seq":11')
    with pytest.raises(AuditLogError, match="last line is incomplete"):
        open_log(config, start)


def test_export_csv_selects_the_days_asked_for(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, start = area
    day = (start + DAY).date().isoformat()
    capsys.readouterr()
    assert audit(path, "export", "--from", day, "--to", day, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["message_id"][-1] for row in rows] == ["3", "4", "5"]
    rejected = rows[1]
    assert (rejected["outcome"], rejected["check"]) == ("rejected", "policy")
    assert rejected["reason"] == "'=no agreement allows police to send this"  # no formula
    assert rows[0]["agreement_ids"] == "isa-police-hub"
    assert all(row["at"].startswith(day) for row in rows)


def test_export_json_covers_a_range(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, start = area
    first, last = start.date().isoformat(), (start + DAY).date().isoformat()
    capsys.readouterr()
    assert audit(path, "export", "--from", first, "--to", last, "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["seq"] for row in rows] == [1, 2, 3, 5, 6]
    assert rows[0]["recipients"] == ["hub"]
    assert rows[3]["reason"] == "=no agreement allows police to send this"


def test_export_refuses_a_tampered_log(
    area: tuple[str, AreaConfig, datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    path, config, start = area
    lines = lines_of(config)
    lines[0], lines[1] = lines[1], lines[0]
    write_lines(config, lines)
    day = start.date().isoformat()
    capsys.readouterr()
    assert audit(path, "export", "--from", day, "--to", day) == 1
    captured = capsys.readouterr()
    assert "line 1: reordered" in captured.err
    assert captured.out == ""


def test_concurrent_appends_share_flushes_and_keep_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Group commit: 40 handlers auditing at once, fewer fsyncs, and a chain that verifies."""
    assert main(["init", str(tmp_path / "area")]) == 0
    path = str(tmp_path / "area" / "gateway.toml")
    config = load_config(path)
    now = utc_now() + timedelta(minutes=1)
    log = open_log(config, now)
    flushes = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal flushes
        flushes += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    async def handlers() -> None:
        writer = GroupCommit(log)
        await asyncio.gather(*(writer.append_all([decision(n)], now) for n in range(1, 41)))

    asyncio.run(handlers())
    log.close(now)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert flushes < 40  # the records of concurrent handlers went to disk together
    ids = [json.loads(line).get("message_id") for line in lines_of(config)]
    assert [i for i in ids if i] == [decision(n).message_id for n in range(1, 41)]  # call order
    capsys.readouterr()
    assert audit(path, "verify") == 0
