"""Operators' actions in the console, on a hash chain of the console's own.

A chain has one writer at a time (the router holds ``state/audit.jsonl``),
so the console writes ``state/console-audit.jsonl``, signed by the gateway
principal like the router's and with its head kept in the tracking store,
so `mash-gateway audit verify --file state/console-audit.jsonl` checks it
the same way.

Why the chain is opened for each action and not held: the console and the
`console add-user` / `remove-user` commands on the host both write to it,
and operators act rarely. Each action opens the chain (taking its lock,
waiting a little while another writer holds it), appends the record,
signs it with a checkpoint and closes it, so the file is always signed to
its last line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from gateway.config.area_config import AreaConfig
from gateway.core.audit_chain import OPERATOR, OperatorAction
from gateway.infra.clock import utc_now
from gateway.infra.keystore import load_signing_identity
from gateway.services.audit_log import AuditLogBusy, open_kept
from gateway.store import AuditHeads

CHAIN_FILE = "console-audit.jsonl"
LOCK_WAIT_S = 10.0  # another writer holds the chain for one append and its checkpoint
LOCK_RETRY_S = 0.05


def chain_path(config: AreaConfig) -> Path:
    return config.base_dir / "state" / CHAIN_FILE


class OperatorAudit:
    """Records who did what, each action signed on the chain before the action is answered."""

    def __init__(self, config: AreaConfig, store: AuditHeads) -> None:
        self._config = config
        self._store = store
        self._lock = asyncio.Lock()  # one writer from this process at a time
        self.path = chain_path(config)
        # Fail at start, not at the first sign-in, if the gateway's signing key is not here.
        load_signing_identity(config, config.gateway, utc_now())

    async def record(self, action: OperatorAction) -> None:
        async with self._lock:
            signer = load_signing_identity(self._config, self._config.gateway, utc_now())
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    log = await open_kept(
                        self._config, self.path, signer, self._store, checkpoint_every=1
                    )
                    break
                except AuditLogBusy:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(LOCK_RETRY_S)
            try:
                await log.write([(action, utc_now())])
            finally:
                await log.aclose(utc_now())

    async def recent(self, count: int) -> list[dict[str, Any]]:
        """The last ``count`` operator records, newest first (checkpoints left out)."""
        return await asyncio.to_thread(_recent, self.path, count)


def _recent(path: Path, count: int) -> list[dict[str, Any]]:
    kept: deque[dict[str, Any]] = deque(maxlen=count)
    try:
        lines = path.open(encoding="utf-8")
    except FileNotFoundError:
        return []
    with lines:
        for line in lines:
            record = json.loads(line)
            if record.get("kind") == OPERATOR:
                kept.append(record)
    return list(reversed(kept))
