"""The escalator's sealing worker: what it seals opens and verifies as the signer's, and a
worker that dies fails its batch instead of losing or forging anything."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import pytest

from gateway.core.envelope import open_bytes
from gateway.services.sealer_pool import SealerFailed, SealerPool, job
from tests.unit.envelope_keys import NOW, WINDOW, fields, keys, registry

pytestmark = pytest.mark.integration


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
