"""Quarantine on the real broker and store: refused, fixed, released, delivered once.

The keeper takes the router's quarantined copy into the store; an operator
adds the missing agreement, releases the copy, and the router, judging the
same envelope again, delivers it once. Releasing twice, releasing a discarded
copy, or releasing one that still fails each gets a clear answer, and every
action is in the keeper's audit chain with who did it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.broker.vhost import BrokerAdmin
from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.envelope import TimeWindow
from gateway.core.lifecycle import State
from gateway.core.quarantine import Filter, QuarantineError, Status
from gateway.services.quarantine_keeper import QuarantineKeeper, audit_path
from tests.integration.exchange_harness import Exchange, eventually
from tests.integration.quarantine_harness import (
    AGREEMENT,
    add_agreement,
    quarantine_exchange,
    refused_referral,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with quarantine_exchange(broker_admin, tmp_path) as running:
        yield running


async def cli(argv: list[str]) -> int:
    """The command line, off the event loop (it runs its own)."""
    return await asyncio.to_thread(main, argv)


def keeper(exchange: Exchange) -> QuarantineKeeper:
    return QuarantineKeeper(load_config(str(exchange.config.path)), exchange.router_store)


def audit_records(exchange: Exchange) -> list[dict[str, object]]:
    lines = audit_path(exchange.config).read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "decision"]


async def test_refused_for_a_missing_agreement_then_released_is_delivered_once(
    exchange: Exchange,
) -> None:
    message_id = await refused_referral(exchange)
    async with keeper(exchange) as k:
        (entry,) = await k.entries(Filter())
    assert entry.facts.message_id == message_id
    assert (entry.cause.check, entry.facts.sender, entry.facts.recipients) == (
        "policy",
        "police",
        ("education",),
    )
    assert "no agreement lets police send Referral to education" in entry.cause.reason

    await add_agreement(exchange)

    async with keeper(exchange) as k:
        released = await k.release(entry.entry_id, "alice")
        outcome = await k.outcome(released, 10)
    assert outcome.again is None and outcome.state in (State.ROUTED, State.DELIVERED)
    assert released.status is Status.RELEASED and released.settled_by == "alice"

    async def delivered() -> bool:
        return len(exchange.inboxes["education"].of_type("Referral")) == 1

    await eventually(delivered)
    (got,) = exchange.inboxes["education"].of_type("Referral")
    assert got.header.fields.message_id == message_id  # the same message, not a new one
    timeline = await exchange.router_store.timeline(message_id)
    assert [t.state for t in timeline][:4] == [
        State.SUBMITTED,
        State.REJECTED,
        State.SUBMITTED,
        State.ROUTED,
    ]
    assert "released from quarantine" in (timeline[2].detail or "")

    with pytest.raises(QuarantineError, match=r"already released at .* by alice"):
        async with keeper(exchange) as k:
            await k.release(entry.entry_id, "bob")
    (record,) = audit_records(exchange)
    assert (record["outcome"], record["operator"], record["message_id"]) == (
        "released",
        "alice",
        message_id,
    )
    assert (
        await cli(
            [
                "--config",
                str(exchange.config.path),
                "audit",
                "verify",
                "--file",
                str(audit_path(exchange.config)),
            ]
        )
        == 0
    )


async def test_a_release_that_still_fails_is_back_in_quarantine_with_its_reason(
    exchange: Exchange,
) -> None:
    message_id = await refused_referral(exchange)
    async with keeper(exchange) as k:
        (entry,) = await k.entries(Filter())
        released = await k.release(entry.entry_id, "alice")
        outcome = await k.outcome(released, 10)
        assert outcome.again is not None
        assert outcome.again.facts.message_id == message_id
        assert outcome.again.cause.check == "policy"
        assert outcome.again.entry_id != entry.entry_id
        (held,) = await k.entries(Filter())
    assert held == outcome.again
    assert exchange.inboxes["education"].messages == []


async def test_discard_then_release_is_refused_and_both_are_audited(
    exchange: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = await refused_referral(exchange)
    config = ["--config", str(exchange.config.path)]
    assert await cli([*config, "quarantine", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    entry_id = listed["entry_id"]
    assert listed["message_id"] == message_id and listed["check"] == "policy"

    assert await cli([*config, "quarantine", "show", entry_id]) == 0
    shown = capsys.readouterr().out
    assert "failed check   policy" in shown and "tracked state  rejected" in shown
    assert "from           police" in shown and "to             education" in shown

    assert (
        await cli(
            [
                *config,
                "quarantine",
                "discard",
                entry_id,
                "--reason",
                "sent in error",
                "--operator",
                "carol",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert await cli([*config, "quarantine", "release", entry_id]) == 1
    error = capsys.readouterr().err
    assert "discarded at" in error and "by carol (sent in error)" in error
    assert "cannot be released" in error
    assert await cli([*config, "quarantine", "discard", entry_id, "--reason", "again"]) == 1
    assert "already discarded" in capsys.readouterr().err
    assert await cli([*config, "quarantine", "release", "nosuchentry"]) == 1
    assert "no quarantined message 'nosuchentry'" in capsys.readouterr().err

    assert await cli([*config, "quarantine", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert await cli([*config, "quarantine", "list", "--status", "discarded", "--json"]) == 0
    (gone,) = json.loads(capsys.readouterr().out)
    assert gone["settled_by"] == "carol" and gone["settle_reason"] == "sent in error"
    records = audit_records(exchange)
    assert [(r["outcome"], r["operator"]) for r in records] == [("discarded", "carol")]


async def test_the_size_limit_leaves_copies_in_rabbitmq(exchange: Exchange) -> None:
    await refused_referral(exchange)
    await refused_referral(exchange)
    config = load_config(str(exchange.config.path))
    limited = config.__class__(
        **{**config.__dict__, "quarantine": config.quarantine.__class__(max_messages=1)}
    )
    async with QuarantineKeeper(limited, exchange.router_store) as k:
        first = await k.collect()
        assert (first.taken, first.full) == (1, True)
        assert len(await k.entries(Filter())) == 1
    async with keeper(exchange) as k:  # the default limit: the second copy was waiting
        assert len(await k.entries(Filter())) == 2


async def test_a_release_is_judged_whatever_the_age_of_the_message(exchange: Exchange) -> None:
    """The 24-hour window refuses stale copies; an operator's release is not one of them."""
    message_id = await refused_referral(exchange)
    with exchange.config.path.open("a", encoding="utf-8") as toml:
        toml.write(AGREEMENT)
    # Every message is now past the router's window: as if the fix took days.
    await exchange.restart_router(TimeWindow(timedelta(0), timedelta(minutes=5)))
    async with keeper(exchange) as k:
        (entry,) = await k.entries(Filter())
        outcome = await k.outcome(await k.release(entry.entry_id, "alice"), 10)
    assert outcome.again is None and outcome.state in (State.ROUTED, State.DELIVERED)

    async def delivered() -> bool:
        return len(exchange.inboxes["education"].of_type("Referral")) == 1

    await eventually(delivered)
    assert exchange.inboxes["education"].of_type("Referral")[0].header.fields.message_id == (
        message_id
    )
