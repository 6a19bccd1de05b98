"""Adapters on a real exchange: declare one on the test area and run it in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from adapters.framework import adapter_config, run_adapter
from adapters.ledger import Ledger
from gateway.config.adapter_config import parse_adapters
from gateway.config.area_config import AreaConfig, ConfigError, load_config
from gateway.store import TrackingStore
from tests.integration.exchange_harness import Exchange


def add_adapter(exchange: Exchange, toml: str) -> AreaConfig:
    """The area's config with ``toml``'s ``[[adapters]]`` in place of the demo's ones.

    Parsed by the same code as gateway.toml, so a test adapter is declared as a user would.
    """
    config = load_config(str(exchange.config.path))

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"test adapter: {key}: {problem}")

    agencies = frozenset(config.inbox_agencies)
    adapters = parse_adapters(tomllib.loads(toml)["adapters"], fail, config.base_dir, agencies)
    return dataclasses.replace(config, adapters=adapters)


@asynccontextmanager
async def running_adapter(
    config: AreaConfig, agency: str, ledger_file: Path, store: TrackingStore | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``agency``'s adapter until the block ends; fails the test if it dies.

    ``store``: the tracking store to use (the router's, to see message states).
    """
    ledger = Ledger(ledger_file)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run_adapter(config, adapter_config(config, agency), ledger, stop, ready, store)
    )
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    assert ready.is_set(), f"adapter {agency} did not start within 15 s"
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        ledger.close()
