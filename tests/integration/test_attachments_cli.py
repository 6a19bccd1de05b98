"""Attachments end to end through the real CLI: send --attach, the router, inbox's folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.integration.test_send_inbox_cli import REQUEST, RunningArea, area, cli, running

pytestmark = pytest.mark.integration

__all__ = ["area", "running"]  # fixtures used here, defined beside the plain send/inbox tests


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 1024 * 1024))
            out.write(block)
            left -= len(block)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def sent_id(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().out
    return out.split()[2]


def test_a_request_with_files_arrives_whole_with_its_folder_and_a_receipt_naming_each(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    letter = random_file(tmp_path / "discharge letter.pdf", 3 * 1024 * 1024 + 17)
    note = tmp_path / "note.txt"
    note.write_text("chronology\n")
    args = ["send", "--as", "hub", "--to", "police", str(REQUEST)]
    assert cli(area, *args, "--attach", str(letter), "--attach", str(note)) == 0
    message_id = sent_id(capsys)

    inbox = tmp_path / "police-inbox"
    assert cli(area, "inbox", "--as", "police", "--out", str(inbox), "--idle", "3") == 0
    xml = (inbox / f"{message_id}.xml").read_bytes()
    assert b"<Filename>discharge letter.pdf</Filename>" in xml
    assert f"<Sha256>{sha256(letter)}</Sha256>".encode() in xml
    assert b"<MediaType>application/pdf</MediaType>" in xml
    files = inbox / f"{message_id}.attachments"
    assert sorted(p.name for p in files.iterdir()) == ["discharge letter.pdf", "note.txt"]
    assert sha256(files / "discharge letter.pdf") == sha256(letter)
    assert (files / "note.txt").read_text() == "chronology\n"
    assert sorted(p.name for p in inbox.iterdir()) == [
        f"{message_id}.attachments",
        f"{message_id}.xml",
    ]  # nothing partial or hidden left

    hub_inbox = tmp_path / "hub-inbox"
    assert cli(area, "inbox", "--as", "hub", "--out", str(hub_inbox), "--idle", "2") == 0
    (receipt,) = hub_inbox.iterdir()
    text = receipt.read_bytes()
    assert b"<Positive>" in text
    assert text.count(b"<AttachmentDigests>") == 2
    assert sha256(letter).encode() in text


def test_an_unsafe_or_oversized_attachment_is_refused_before_sending(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    bad = tmp_path / "bell\x07.pdf"
    bad.write_bytes(b"x")
    assert (
        cli(area, "send", "--as", "hub", "--to", "police", str(REQUEST), "--attach", str(bad)) == 1
    )
    assert "control character" in capsys.readouterr().err
    limited = area.with_name("limited.toml")
    limited.write_text(area.read_text() + '\n[limits]\nmax_attachment = "1KiB"\n')
    big = random_file(tmp_path / "scan.png", 2048)
    assert (
        cli(limited, "send", "--as", "hub", "--to", "police", str(REQUEST), "--attach", str(big))
        == 1
    )
    err = capsys.readouterr().err
    assert "max_attachment_bytes is 1024" in err and "scan.png" in err


def test_a_receipt_cannot_carry_files(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], running: RunningArea
) -> None:
    receipt = Path(__file__).parents[2] / "schemas" / "examples" / "valid" / "delivery-receipt.xml"
    note = tmp_path / "note.txt"
    note.write_text("x")
    capsys.readouterr()
    assert (
        cli(area, "send", "--as", "hub", "--to", "police", str(receipt), "--attach", str(note)) == 1
    )
    assert "carries no attachments" in capsys.readouterr().err


def test_a_100_mib_attachment_travels_byte_identical(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = random_file(tmp_path / "interview.mp4", 100 * 1024 * 1024 + 5)
    args = ["send", "--as", "hub", "--to", "police", str(REQUEST), "--attach", str(video)]
    assert cli(area, *args) == 0
    message_id = sent_id(capsys)
    inbox = tmp_path / "police-inbox"
    assert cli(area, "inbox", "--as", "police", "--out", str(inbox), "--idle", "5") == 0
    received = inbox / f"{message_id}.attachments" / "interview.mp4"
    assert received.stat().st_size == video.stat().st_size
    assert sha256(received) == sha256(video)
    staging = area.parent / "state" / "transfers" / "police"
    assert not staging.exists() or not list(staging.iterdir())  # nothing left staged


def test_seal_and_open_carry_attachments_by_file(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    letter = random_file(tmp_path / "letter.pdf", 200_000)
    sealed = tmp_path / "request.env"
    args = ["seal", "--from", "hub", "--to", "police", str(REQUEST), "-o", str(sealed)]
    assert cli(area, *args, "--attach", str(letter)) == 0
    opened = tmp_path / "out" / "request.xml"
    opened.parent.mkdir()
    assert cli(area, "open", "--as", "police", str(sealed), "-o", str(opened)) == 0
    assert b"<Filename>letter.pdf</Filename>" in opened.read_bytes()
    assert sha256(tmp_path / "out" / "request.attachments" / "letter.pdf") == sha256(letter)
    assert sorted(p.name for p in opened.parent.iterdir()) == ["request.attachments", "request.xml"]

    broken = tmp_path / "broken.env"
    data = bytearray(sealed.read_bytes())
    data[-100] ^= 1
    broken.write_bytes(bytes(data))
    refused = tmp_path / "refused" / "broken.xml"
    refused.parent.mkdir()
    capsys.readouterr()
    assert cli(area, "open", "--as", "police", str(broken), "-o", str(refused)) == 1
    assert "segments" in capsys.readouterr().err
    assert list(refused.parent.iterdir()) == []  # nothing partial is left
