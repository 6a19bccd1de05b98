"""Operators' actions in the console, on a hash chain of the console's own.

A chain has one writer (the router holds ``state/audit.jsonl``), so the
console writes ``state/console-audit.jsonl``, signed by the gateway
principal like the router's and with its head kept in the tracking store,
so `mash-gateway audit verify --file state/console-audit.jsonl` checks it
the same way. Every record is followed by a checkpoint: operators act
rarely, and each action is then signed the moment it is written.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from pathlib import Path
from typing import Any

from gateway.config.area_config import AreaConfig
from gateway.core.audit_chain import OPERATOR, OperatorAction
from gateway.infra.clock import utc_now
from gateway.infra.keystore import load_signing_identity
from gateway.services.audit_log import AuditLog, open_kept
from gateway.store import AuditHeads

CHAIN_FILE = "console-audit.jsonl"


def chain_path(config: AreaConfig) -> Path:
    return config.base_dir / "state" / CHAIN_FILE


class OperatorAudit:
    """Records who did what; opened with the console, closed (and signed) with it."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    @classmethod
    async def open(cls, config: AreaConfig, store: AuditHeads) -> OperatorAudit:
        signer = load_signing_identity(config, config.gateway, utc_now())
        return cls(await open_kept(config, chain_path(config), signer, store, checkpoint_every=1))

    @property
    def path(self) -> Path:
        return self._log.path

    async def record(self, action: OperatorAction) -> None:
        await self._log.write([(action, utc_now())])

    async def recent(self, count: int) -> list[dict[str, Any]]:
        """The last ``count`` operator records, newest first (checkpoints left out)."""
        return await asyncio.to_thread(_recent, self.path, count)

    async def close(self) -> None:
        await self._log.aclose(utc_now())


def _recent(path: Path, count: int) -> list[dict[str, Any]]:
    kept: deque[dict[str, Any]] = deque(maxlen=count)
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("kind") == OPERATOR:
                kept.append(record)
    return list(reversed(kept))
