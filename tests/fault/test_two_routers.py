"""Two router processes on one PostgreSQL store and one vhost, one of them killed mid-run.

Together they must route every message and record it once, and fire every
escalation once: the store hands a due deadline to one router at a time
(SKIP LOCKED), and RabbitMQ redelivers the killed router's unacked messages
to the survivor.

The area's delivery deadline is 3 s and its grace 2 s, and the hub never
consumes its inbox, so every referral climbs to level 2 while the test
watches: level 1 to the hub and the school, level 2 to the hub.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.broker import topology
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from tests.fault.conftest import FaultArea, RouterProcess
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.fault

REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
MESSAGES = 300
KILL_AFTER = 120
SHORT_DEADLINES = """
[deadlines]
delivery = { duration = "3s", counting = "clock" }
grace = { duration = "2s", counting = "clock" }
"""
RUN_TIMEOUT_S = 120.0


@pytest.fixture
async def shared(
    broker_admin: BrokerAdmin, tmp_path: Path, pg_schema_url: str
) -> AsyncIterator[tuple[FaultArea, RouterProcess, str]]:
    """A demo area on PostgreSQL with short deadlines, and two routers, each with its own audit."""
    vhost = f"mash-fault-{uuid.uuid4().hex[:8]}"
    await broker_admin.create_vhost(vhost, "guest")
    url = vhost_url(AMQP_URL, vhost)
    directory = tmp_path / "area"
    assert main(["init", str(directory), "--broker-url", url]) == 0
    config_path = directory / "gateway.toml"
    text = config_path.read_text()
    assert 'url = "sqlite:///state/gateway.db"' in text
    text = text.replace('url = "sqlite:///state/gateway.db"', f'url = "{pg_schema_url}"')
    config_path.write_text(text + SHORT_DEADLINES)

    def router(name: str) -> RouterProcess:
        audit = str(directory / "state" / f"audit-{name}.jsonl")
        return RouterProcess(config_path, tmp_path / f"{name}.log", ("--audit-log", audit))

    first, second = router("router-a"), router("router-b")
    area = FaultArea(load_config(str(config_path)), vhost, url, tmp_path, first)
    try:
        await first.start()
        await second.start()
        yield area, second, pg_schema_url
    finally:
        first.stop()
        second.stop()
        for edge in area.edges.values():
            await edge.__aexit__(None, None, None)
            await edge.store.close()
        await broker_admin.delete_vhost(vhost)


async def test_two_routers_route_and_escalate_each_message_once_when_one_is_killed(
    shared: tuple[FaultArea, RouterProcess, str],
) -> None:
    area, survivor, store_url = shared
    school = await area.edge("education")  # the example referral carries a UPN: a school's
    sent = []
    for n in range(MESSAGES):
        fields = await school.submit(Submission(REFERRAL, ("hub",), correlation_id=f"CASE-{n}"))
        sent.append(fields.message_id)
        if n == KILL_AFTER:
            area.router.kill()  # mid-run: its unacked messages go to the survivor
    assert survivor.alive()
    await area.router.start()  # back again, so both routers fire escalations

    db = await asyncpg.connect(store_url)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while await _escalations_recorded(db) < 2 * MESSAGES:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {await _escalations_recorded(db)} of {2 * MESSAGES} escalations "
                    f"recorded; survivor log:\n{survivor.log_tail()}"
                )
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # a few more ticks of both escalators: nothing fires again
        routed = await db.fetch(
            "SELECT t.message_id, COUNT(*) FROM transitions t JOIN messages m USING (message_id)"
            " WHERE m.message_type = 'Referral' AND t.state = 'routed' GROUP BY t.message_id"
        )
        assert sorted(r[0] for r in routed) == sorted(sent)
        assert {r[1] for r in routed} == {1}, "a referral was recorded as routed twice"
        per_level = await db.fetch(
            "SELECT deadline_id, level, COUNT(*) FROM deadline_events"
            " WHERE event = 'escalated' GROUP BY deadline_id, level"
        )
        assert len(per_level) == 2 * MESSAGES and {r[2] for r in per_level} == {1}
    finally:
        await db.close()

    copies = await _inbox_copies(area.amqp_url, "hub")
    referrals = {m for (t, m) in copies if t == "Referral"}
    assert referrals == set(sent), "a referral never reached the hub's inbox"
    escalation_copies = Counter(m for (t, m) in copies.elements() if t == "Escalation")
    assert len(escalation_copies) == 2 * MESSAGES  # level 1 and level 2 for each referral
    assert set(escalation_copies.values()) == {1}, "an escalation was published twice"
    for process in (area.router, survivor):
        log = process.log_path.read_text(errors="replace")
        assert "Traceback" not in log, f"{process.log_path.name}:\n{process.log_tail()}"


async def _escalations_recorded(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM deadline_events WHERE event = 'escalated'"))


async def _inbox_copies(url: str, agency: str) -> Counter[tuple[str, str]]:
    """Every copy waiting in the agency's inbox, by (message type, message id); drains it."""
    copies: Counter[tuple[str, str]] = Counter()
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.inbox_queue(agency), ensure=False)
        while (message := await queue.get(fail=False, timeout=10)) is not None:
            copies[(message.type or "", message.message_id or "")] += 1
            await message.ack()
    return copies
