"""`mash-gateway audit verify | export` through the CLI, on a real file written by AuditLog.

The area and its keys come from `mash-gateway init`; the log is signed with
the gateway principal's key as the router loads it. The last tests write the
log as the router does, keeping its head in the tracking store (SQLite and
PostgreSQL), and cut the file back in the ways a signature cannot see.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.audit_chain import ChainHead, Decision, Outcome, decision_link
from gateway.core.records import AuditHead
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services.audit_log import (
    AuditLog,
    AuditLogError,
    GroupCommit,
    default_path,
    open_kept,
)
from gateway.store import store_from_url

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


# The head kept in the tracking store: a file emptied or cut back fails, on both stores.


@dataclass(frozen=True)
class KeptArea:
    config_path: str
    config: AreaConfig
    start: datetime


async def write_kept_log(config: AreaConfig, start: datetime, decisions: range) -> None:
    """The router's way: open_kept over the area's store, write, close; the head kept each time."""
    store = store_from_url(config.store_url)
    await store.open()
    try:
        signer = keystore.load_signing_identity(config, config.gateway, start)
        log = await open_kept(config, default_path(config), signer, store, checkpoint_every=3)
        for n in decisions:
            await log.write([(decision(n), start + (n // 3) * DAY)])
        await log.aclose(start + 2 * DAY)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def kept_area(request: pytest.FixtureRequest, tmp_path: Path) -> KeptArea:
    """7 decisions checkpointed every 3 and on close (10 records), the head kept in the store."""
    assert main(["init", str(tmp_path / "area")]) == 0
    toml = tmp_path / "area" / "gateway.toml"
    if request.param == "postgres":
        url = request.getfixturevalue("pg_schema_url")
        text = toml.read_text()
        toml.write_text(text.replace('url = "sqlite:///state/gateway.db"', f'url = "{url}"', 1))
    config = load_config(str(toml))
    start = utc_now() + timedelta(minutes=1)
    asyncio.run(write_kept_log(config, start, range(1, 8)))
    return KeptArea(str(toml), config, start)


def kept(area: KeptArea) -> AuditHead:
    async def read() -> AuditHead | None:
        store = store_from_url(area.config.store_url)
        await store.open()
        try:
            return await store.audit_head("state/audit.jsonl")
        finally:
            await store.close()

    head = asyncio.run(read())
    assert head is not None
    return head


def test_an_intact_file_holds_the_head_kept_in_the_store(
    kept_area: KeptArea, capsys: pytest.CaptureFixture[str]
) -> None:
    head = kept(kept_area)
    last = json.loads(lines_of(kept_area.config)[-1])
    assert (head.seq, head.hash) == (10, last["hash"])  # the closing checkpoint's
    capsys.readouterr()
    assert audit(kept_area.config_path, "verify") == 0
    out = capsys.readouterr().out
    assert "7 records, 3 gateway-signed checkpoints; chain intact" in out
    assert "it holds the store's head, record 10" in out


def test_an_emptied_file_fails_naming_every_record_missing(
    kept_area: KeptArea, capsys: pytest.CaptureFixture[str]
) -> None:
    head = kept(kept_area)
    default_path(kept_area.config).write_bytes(b"")
    capsys.readouterr()
    assert audit(kept_area.config_path, "verify") == 1
    err = capsys.readouterr().err
    assert (
        f"audit.jsonl: line 1: cut short: the store's head is record 10 (hash {head.hash}, " in err
    )
    assert "the file is empty: records 1-10 missing" in err


def test_a_file_cut_back_to_an_earlier_checkpoint_fails_even_live(
    kept_area: KeptArea, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(kept_area.config, lines_of(kept_area.config)[:8])  # through the 2nd checkpoint
    capsys.readouterr()
    assert audit(kept_area.config_path, "verify") == 1
    assert "line 9: cut short: the store's head is record 10" in capsys.readouterr().err
    assert audit(kept_area.config_path, "verify", "--live") == 1
    assert "the file ends at record 8: records 9-10 are missing" in capsys.readouterr().err
    day = kept_area.start.date().isoformat()
    assert audit(kept_area.config_path, "export", "--from", day, "--to", day) == 1
    assert "cut short" in capsys.readouterr().err


def test_a_file_cut_mid_way_fails_naming_the_last_whole_record(
    kept_area: KeptArea, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_path(kept_area.config)
    data = path.read_bytes()
    cut = sum(len(line) + 1 for line in data.splitlines()[:5]) + 30  # 30 bytes into line 6
    with path.open("r+b") as handle:
        handle.truncate(cut)
    capsys.readouterr()
    assert audit(kept_area.config_path, "verify") == 1
    err = capsys.readouterr().err
    assert "line 6: cut short:" in err
    assert "the file ends at record 5 and a line cut short: records 6-10 are missing" in err


def test_the_router_refuses_to_continue_a_file_cut_back(kept_area: KeptArea) -> None:
    """Continuing would fork the chain from the one the store vouches for."""
    write_lines(kept_area.config, lines_of(kept_area.config)[:4])
    with pytest.raises(AuditLogError, match=r"record 10 .* but the file ends at record 4"):
        asyncio.run(write_kept_log(kept_area.config, kept_area.start, range(8, 9)))
    assert len(lines_of(kept_area.config)) == 4  # nothing was written


def test_a_reopened_log_moves_the_kept_head_on(
    kept_area: KeptArea, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(write_kept_log(kept_area.config, kept_area.start, range(8, 9)))
    assert kept(kept_area).seq == 12  # decision 8, then the closing checkpoint
    capsys.readouterr()
    assert audit(kept_area.config_path, "verify") == 0
    assert "it holds the store's head, record 12" in capsys.readouterr().out


def test_a_second_writer_of_the_same_chain_name_is_refused(
    kept_area: KeptArea, tmp_path: Path
) -> None:
    """Two routers on one store with one chain name (a copy of the area on another host)."""
    assert main(["init", str(tmp_path / "b")]) == 0  # short: gpg-agent socket paths
    toml = tmp_path / "b" / "gateway.toml"
    store_url = f'url = "{kept_area.config.store_url}"'
    toml.write_text(toml.read_text().replace('url = "sqlite:///state/gateway.db"', store_url, 1))
    other = load_config(str(toml))
    with pytest.raises(AuditLogError, match="but the file is empty"):  # its file lacks the head
        asyncio.run(write_kept_log(other, kept_area.start, range(1, 2)))

    async def race() -> None:
        """Both open a new chain name before either checkpoints; the second to keep loses."""
        store = store_from_url(other.store_url)
        await store.open()
        try:
            logs = []
            for config in (kept_area.config, other):
                signer = keystore.load_signing_identity(config, config.gateway, kept_area.start)
                path = config.base_dir / "state" / "audit-r.jsonl"
                logs.append(await open_kept(config, path, signer, store, checkpoint_every=1))
            await logs[0].write([(decision(1), kept_area.start)])
            with pytest.raises(AuditLogError, match="another router writes a chain of the same"):
                await logs[1].write([(decision(1), kept_area.start)])
            for log in logs:
                log.close(kept_area.start)
        finally:
            await store.close()

    asyncio.run(race())
