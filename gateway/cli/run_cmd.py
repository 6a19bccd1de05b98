"""`mash-gateway run`: the router service, until SIGTERM or SIGINT; SIGHUP re-reads the config.

It declares the topology, consumes ``gateway.router`` and acks each message
only after its routing is recorded; a stop lets the message in hand finish.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from gateway import logs
from gateway.config import AreaConfig, load_config
from gateway.router import run_router
from gateway.store import store_from_url


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the router service")
    parser.add_argument(
        "--json-logs",
        action="store_true",
        default=None,
        help="JSON log lines (default: JSON unless stderr is a terminal)",
    )
    parser.set_defaults(handler=run)


async def serve(config: AreaConfig) -> None:
    store = store_from_url(config.store_url)
    await store.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_router(config, store, stop, reload_on_sighup=True)
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    logs.configure(json=args.json_logs)
    asyncio.run(serve(load_config(args.config)))
    return 0
