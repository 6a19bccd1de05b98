"""What a mail is remembered by, how long, and what a copy is told (replay.py, replay_memory.py)."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.intake import mime
from gateway.intake.refusal import Refusal
from gateway.intake.replay import KeyKind, ReplayKey, Seen, keys, message_id, replayed, too_old
from gateway.intake.replay_memory import ReplayMemory

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


def test_the_message_id_is_required_once_and_read_without_brackets() -> None:
    assert message_id([" <abc@health.example>\r\n"]) == "abc@health.example"
    for values in ([], ["<a@x>", "<b@x>"], ["<>"]):
        refusal = message_id(values)
        assert isinstance(refusal, Refusal) and refusal.reply.startswith("550 5.6.0"), values


def test_a_message_id_with_8bit_bytes_is_refused_as_a_message_id_problem() -> None:
    """Found by tests/fuzz (fuzz_intake): the email package hands an 8-bit header value over
    as a Header object, on which message_id raised AttributeError (the SMTP server's 451)."""
    parsed = mime.entity(b"From: a@b.example\r\nMessage-ID: <caf\xe9@b.example>\r\n\r\nx")
    values = parsed.header_values("Message-ID")
    assert values == ["<caf\ufffd@b.example>"]
    refusal = message_id(values)
    assert isinstance(refusal, Refusal) and refusal.check == "message-id"
    assert "in ASCII" in refusal.reason


def test_keys_scope_the_message_id_to_its_domain_and_add_each_signed_digest_once() -> None:
    ours = keys("health.example", "abc@x", ("d1", "d1", "d2"))
    assert [k.kind for k in ours] == [
        KeyKind.MESSAGE_ID,
        KeyKind.SIGNED_CONTENT,
        KeyKind.SIGNED_CONTENT,
    ]
    assert [k.digest for k in ours[1:]] == ["d1", "d2"]
    assert keys("police.example", "abc@x", ())[0] != ours[0]
    assert "abc" not in ours[0].digest  # stored as a digest, not as the id


def test_a_replay_is_told_which_message_it_copies() -> None:
    refusal = replayed(Seen(KeyKind.SIGNED_CONTENT, "m-1", NOW))
    assert refusal.reply == (
        "550 5.7.1 A mail with the same signed content was accepted at 2026-11-23 10:00 UTC "
        "as m-1; a second copy is refused as a replay"
    )
    assert "right now" in replayed(Seen(KeyKind.MESSAGE_ID, None, None)).reason


def test_a_signature_older_than_the_window_is_refused() -> None:
    assert too_old(None, NOW, WINDOW) is None
    assert too_old(NOW - WINDOW, NOW, WINDOW) is None
    old = too_old(NOW - WINDOW - timedelta(minutes=1), NOW, WINDOW)
    assert old is not None and old.check == "signature-too-old"
    assert "more than 14 days ago" in old.reason


KEYS = (ReplayKey(KeyKind.MESSAGE_ID, "a" * 64), ReplayKey(KeyKind.SIGNED_CONTENT, "b" * 64))


async def test_the_memory_keeps_an_accepted_mail_across_a_restart_for_the_window(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "intake-replay.db"
    memory = ReplayMemory(path, WINDOW)
    await memory.open()
    assert await memory.claim(KEYS, NOW) is None
    await memory.remember(KEYS, "m-1", NOW)
    memory.release(KEYS)
    await memory.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = ReplayMemory(path, WINDOW)
    await again.open()
    try:
        only_content = (ReplayKey(KeyKind.MESSAGE_ID, "c" * 64), KEYS[1])
        assert await again.claim(only_content, NOW + WINDOW) == Seen(
            KeyKind.SIGNED_CONTENT, "m-1", NOW
        )
        later = NOW + WINDOW + timedelta(seconds=1)
        assert await again.claim(KEYS, later) is None  # past the window: forgotten
        again.release(KEYS)
    finally:
        await again.close()


async def test_two_copies_at_once_cannot_both_pass_and_a_refused_mail_leaves_nothing(
    tmp_path: Path,
) -> None:
    memory = ReplayMemory(tmp_path / "replay.db", WINDOW)
    await memory.open()
    try:
        first, second = await asyncio.gather(memory.claim(KEYS, NOW), memory.claim(KEYS, NOW))
        assert first is None and second == Seen(KeyKind.MESSAGE_ID, None, None)
        memory.release(KEYS)  # the first was refused later on: never remembered
        assert await memory.claim(KEYS, NOW) is None
    finally:
        await memory.close()


async def test_mails_remembered_at_once_are_each_on_disk_when_their_remember_returns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replay.db"
    memory = ReplayMemory(path, WINDOW)
    await memory.open()
    mails = [(ReplayKey(KeyKind.MESSAGE_ID, f"{i:064x}"),) for i in range(20)]
    try:
        await asyncio.gather(*(memory.remember(k, f"m-{i}", NOW) for i, k in enumerate(mails)))
        # Read through a second connection: what a restart right now would find.
        again = ReplayMemory(path, WINDOW)
        await again.open()
        try:
            for i, k in enumerate(mails):
                assert await again.claim(k, NOW) == Seen(KeyKind.MESSAGE_ID, f"m-{i}", NOW)
        finally:
            await again.close()
    finally:
        await memory.close()


async def test_a_failed_write_reaches_every_mail_in_its_commit(tmp_path: Path) -> None:
    memory = ReplayMemory(tmp_path / "replay.db", WINDOW)
    await memory.open()
    try:
        await memory.remember(KEYS, "m-1", NOW)
        refuse = (
            "CREATE TRIGGER refuse BEFORE INSERT ON accepted BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
        await memory._run(lambda: memory._db().execute(refuse))  # as a full disk would
        other = (ReplayKey(KeyKind.MESSAGE_ID, "c" * 64),)
        outcomes = await asyncio.gather(
            memory.remember(other, "m-2", NOW),
            memory.remember((ReplayKey(KeyKind.MESSAGE_ID, "d" * 64),), "m-3", NOW),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, Exception) for outcome in outcomes)
        assert await memory.claim(other, NOW) is None  # nothing half-written
    finally:
        await memory.close()
