"""PostgreSQL restarted under two routers mid-run: every message routed and recorded once.

Both routers lose their store connections at once. A message whose store
work fails is requeued (never acked unrecorded) and is handled again once
the store is back; the escalators' ticks fail and resume. Needs the
machine's own PostgreSQL cluster (``pg_ctlcluster``), as root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.services.edge import Submission
from tests.fault.conftest import FaultArea, RouterProcess
from tests.fault.test_two_routers import REFERRAL, shared

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(
        shutil.which("pg_ctlcluster") is None or os.geteuid() != 0,
        reason="restarts the machine's PostgreSQL cluster: needs pg_ctlcluster, as root",
    ),
]

__all__ = ["shared"]  # the two-router fixture, shared with test_two_routers

MESSAGES = 300
RESTART_AFTER = 100
RUN_TIMEOUT_S = 240.0


def restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
    )


async def test_a_store_restart_under_two_routers_loses_and_doubles_nothing(
    shared: tuple[FaultArea, RouterProcess, str],
) -> None:
    area, second, store_url = shared
    school = await area.edge("education")
    sent = []
    for n in range(MESSAGES):
        fields = await school.submit(Submission(REFERRAL, ("hub",), correlation_id=f"CASE-{n}"))
        sent.append(fields.message_id)
        if n == RESTART_AFTER:
            await asyncio.to_thread(restart_postgresql)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        try:
            db = await asyncpg.connect(store_url)
            break
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    try:
        query = (
            "SELECT t.message_id, COUNT(*) FROM transitions t JOIN messages m USING (message_id)"
            " WHERE m.message_type = 'Referral' AND t.state = 'routed' GROUP BY t.message_id"
        )
        while len(routed := await db.fetch(query)) < MESSAGES:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(routed)} of {MESSAGES} routed; router logs:\n"
                    f"{area.router.log_tail()}\n{second.log_tail()}"
                )
            await asyncio.sleep(0.5)
        assert sorted(r[0] for r in routed) == sorted(sent)
        assert {r[1] for r in routed} == {1}, "a referral was recorded as routed twice"
    finally:
        await db.close()
    assert area.router.alive() and second.alive(), "a router died with its store"
