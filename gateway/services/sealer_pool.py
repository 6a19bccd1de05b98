"""Sealing in a worker process, so the escalator's event loop publishes while another core signs.

Why: a burst of escalations is CPU-bound in the router's one Python
process, and sealing (two Ed25519 signatures, two HPKE seals and the
header's XML per two-recipient envelope) is about 0.4 ms of each
escalation's CPU. ``seal_bytes`` is pure, so one worker process seals a
chunk while the loop publishes the previous chunk's copies and waits on
their confirms.

The key: the worker holds the gateway's current signing key and no other.
It reaches the worker once, as raw bytes among the pool's start-up
arguments, pickled down the pipe to the spawned process (spawned, not
forked, so the worker inherits nothing else of the router's memory); it is
never written anywhere. A worker whose parent dies exits (it watches its
parent's id), so a killed router leaves no process holding the key. A new
signing key (a SIGHUP or a rotation) is a new pool (``SealerPool.key_id``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from gateway.core.envelope import HeaderFields, RecipientKey, SigningIdentity, seal_bytes
from gateway.core.errors import GatewayError

# One job: the header, the payload, and each recipient as (agency, key id, raw X25519 public key).
SealJob = tuple[HeaderFields, bytes, tuple[tuple[str, str, bytes], ...]]
PARENT_WATCH_S = 1.0
# A chunk (SEAL_CHUNK escalations, tens of ms) far past this has a hung worker; its first
# chunk waits for the worker's start-up (imports: about a second, several under load).
SEAL_TIMEOUT_S = 60.0

_signer: SigningIdentity | None = None  # the worker's, set once at its start


class SealerFailed(GatewayError):
    """The sealing worker died; nothing of the batch was sent, and the next tick starts another."""


class SealerPool:
    """One worker process sealing for one signing identity."""

    def __init__(self, signer: SigningIdentity) -> None:
        self.key_id = signer.key_id
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(
                os.getpid(),
                signer.agency,
                signer.key_id,
                signer.private_key.private_bytes_raw(),
            ),
        )
        self.broken = False
        self._pool.submit(_seal_all, [])  # spawns the worker now, in the background

    async def start(self) -> None:
        """Wait until the worker is up (its imports done)."""
        await self.seal([])

    async def seal(self, jobs: Sequence[SealJob]) -> list[bytes]:
        """Each job's sealed envelope, in order."""
        try:
            return await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._pool, _seal_all, list(jobs)),
                SEAL_TIMEOUT_S,
            )
        except BrokenProcessPool as exc:
            self.broken = True
            raise SealerFailed(f"the sealing worker stopped: {exc}") from exc
        except TimeoutError as exc:
            self.broken = True  # hung: replaced (and killed) before the next chunk
            silent = f"the sealing worker did not answer in {SEAL_TIMEOUT_S:.0f} s"
            raise SealerFailed(silent) from exc

    def close(self) -> None:
        """Stop the worker; a chunk it is sealing is abandoned (its batch is not recorded)."""
        workers = list((self._pool._processes or {}).values())  # no public handle on them
        self._pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            if worker.is_alive():
                worker.kill()  # a hung worker would otherwise keep the key and a core


def job(fields: HeaderFields, payload: bytes, keys: Sequence[RecipientKey]) -> SealJob:
    """What the worker needs to seal one envelope, in a form that crosses a process boundary."""
    return (
        fields,
        payload,
        tuple((k.agency, k.key_id, k.public_key.public_bytes_raw()) for k in keys),
    )


def _seal_one(signer: SigningIdentity, sealing: SealJob) -> bytes:
    fields, payload, recipients = sealing
    keys = [
        RecipientKey(agency, key_id, X25519PublicKey.from_public_bytes(raw))
        for agency, key_id, raw in recipients
    ]
    return seal_bytes(fields, payload, signer, keys)


def _start(parent: int, agency: str, key_id: str, raw: bytes) -> None:
    """``parent`` is the router's id as the router gave it: one that died while this worker
    was still starting is already gone by the time the worker could ask for its parent."""
    global _signer
    _signer = SigningIdentity(agency, key_id, Ed25519PrivateKey.from_private_bytes(raw))
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()


def _watch(parent: int) -> None:
    """Exit once the router that started this worker is gone (re-parented: another parent id)."""
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_S)
    os._exit(0)


def _seal_all(jobs: list[SealJob]) -> list[bytes]:
    if _signer is None:  # pragma: no cover - _start always runs first
        raise RuntimeError("the sealing worker has no signing key")
    return [_seal_one(_signer, j) for j in jobs]
