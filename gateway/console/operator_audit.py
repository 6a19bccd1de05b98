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

Why a quarantine release or discard is not here: it is a decision about a
message (its id, sender, type, recipients, the failed check), written by
the quarantine keeper (the same code for the console and the CLI) on its
own chain as a ``decision`` record naming the operator, so `audit export`
lists it with the message's other decisions. The console's audit page shows
both chains' operators' records together (``recent``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from gateway.config.area_config import AreaConfig
from gateway.core.audit_chain import DECISION, OPERATOR, OperatorAction
from gateway.infra.clock import utc_now
from gateway.infra.keystore import load_signing_identity
from gateway.services import quarantine_keeper
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
        """The last ``count`` operators' actions on this chain and the quarantine keeper's,
        newest first (checkpoints and the router's decisions left out)."""
        chains = (self.path, quarantine_keeper.audit_path(self._config))
        return await asyncio.to_thread(_recent, chains, count)


def _recent(paths: tuple[Path, ...], count: int) -> list[dict[str, Any]]:
    found = [record for path in paths for record in _operators(path, count)]
    return sorted(found, key=lambda r: str(r["at"]), reverse=True)[:count]


def _operators(path: Path, count: int) -> deque[dict[str, Any]]:
    kept: deque[dict[str, Any]] = deque(maxlen=count)
    try:
        lines = path.open(encoding="utf-8")
    except FileNotFoundError:
        return kept
    with lines:
        for line in lines:
            shown = as_action(json.loads(line))
            if shown is not None:
                kept.append(shown)
    return kept


def as_action(record: dict[str, Any]) -> dict[str, Any] | None:
    """An operator's record as the audit page shows it: an ``operator`` record as it is, a
    decision an operator made (a quarantine release or discard) as who, what, on which message."""
    if record.get("kind") == OPERATOR:
        return record
    if record.get("kind") == DECISION and record.get("operator"):
        return {
            "at": record["at"],
            "operator": record["operator"],
            "role": None,
            "action": f"quarantine {record['outcome']}",
            "target": record["message_id"],
            "reason": record["reason"],
        }
    return None
