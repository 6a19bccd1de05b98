"""The escalator's sealing worker: what it seals opens and verifies as the signer's, and a
worker that dies fails its batch instead of losing or forging anything."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.envelope import open_bytes
from gateway.services.sealer_pool import SealerFailed, SealerPool, job
from tests.integration.exchange_harness import eventually
from tests.unit.envelope_keys import NOW, WINDOW, fields, keys, registry

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pool() -> AsyncIterator[SealerPool]:
    sealer = SealerPool(keys("police").signer())
    await sealer.start()
    yield sealer
    sealer.close()


async def test_what_the_worker_seals_every_recipient_opens_as_the_signers(
    pool: SealerPool,
) -> None:
    recipients = ("health", "probation")
    header = fields("police", recipients)
    [sealed] = await pool.seal(
        [job(header, b"<Escalation/>", [keys(r).recipient() for r in recipients])]
    )
    for agency in recipients:
        opened, plaintext = open_bytes(
            sealed, registry(), keys(agency).identity(), NOW, WINDOW, None
        )
        assert plaintext == b"<Escalation/>"
        assert opened.header.fields == header
        assert opened.header.signing_key_id == keys("police").sign_id


async def test_a_killed_worker_fails_the_batch_and_says_so(pool: SealerPool) -> None:
    [worker] = pool._pool._processes  # the one worker
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(SealerFailed):
        await pool.seal([job(fields(), b"x", [keys("health").recipient()])])
    assert pool.broken


ROUTER = """
import asyncio, sys, time
from gateway.services.sealer_pool import SealerPool
from tests.unit.envelope_keys import keys

async def main() -> None:
    pool = SealerPool(keys("police").signer())
    await pool.start()
    print(*pool._pool._processes, flush=True)
    time.sleep(600)

asyncio.run(main())
"""


async def test_a_killed_router_leaves_no_worker_holding_its_key() -> None:
    router = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ROUTER, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert router.stdout is not None
    worker = int(await router.stdout.readline())
    router.kill()
    await router.wait()

    async def gone() -> bool:
        return not Path(f"/proc/{worker}").exists() or "Z" in _state(worker)

    await eventually(gone, timeout=30)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
