"""`mash-gateway run`: the router service, until SIGTERM or SIGINT; SIGHUP re-reads the config
(for the router, its escalator and any adapters it hosts).

It logs in as the gateway principal's RabbitMQ user once `broker setup` has
issued one (and then checks the topology setup declared; otherwise, as in the
demo, it declares it), consumes every agency's ingress queue and acks each message only
after its routing is recorded; a stop lets the message in hand finish.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path

from adapters.framework import run_adapters
from gateway.broker.credentials import router_login
from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import AreaConfig, load_config
from gateway.config.certificates import adapter_certificates, broker_certificates
from gateway.infra import logs
from gateway.services import certificate_watch, health, metrics_server, queue_depths
from gateway.services.router import run_router
from gateway.store import TrackingStore, opened_store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the router service")
    logs.add_json_argument(parser)
    parser.add_argument(
        "--audit-log",
        type=Path,
        help="this router's audit chain (default state/audit.jsonl); each router of several "
        "sharing one store needs its own, since a chain has one writer",
    )
    parser.add_argument(
        "--with-adapters",
        nargs="*",
        metavar="AGENCY",
        help="also run these agencies' adapters in this process (no names: every configured one)",
    )
    metrics_server.add_listen_argument(parser)
    parser.set_defaults(handler=run)


async def serve(
    config: AreaConfig,
    metrics_listen: str | None = None,
    audit_log: Path | None = None,
    adapters: Sequence[str] | None = None,
) -> None:
    """Metrics and health (if configured) are served, and queue depths polled, while the
    router runs."""
    listen = metrics_server.listen_address(config, metrics_listen)
    stop = stop_on_signals()
    async with opened_store(config.store_url) as store:
        depths: AbstractAsyncContextManager[None] = (
            queue_depths.watching(
                router_login(config).url, config.inbox_agencies, tls=config.broker_tls
            )
            if listen is not None
            else nullcontext()
        )
        writable = health.store_writable(store.check_writable)
        ready = asyncio.Event()
        with (
            health.READINESS.watching("store", writable),
            health.READINESS.watching("router", health.started(ready, "the router")),
        ):
            certificates = broker_certificates(config) | (
                adapter_certificates(config, adapters) if adapters is not None else {}
            )
            async with (
                metrics_server.serving(listen),
                depths,
                certificate_watch.watching(certificates),
            ):
                if adapters is None:
                    await run_router(
                        config, store, stop, ready, reload_on_sighup=True, audit_path=audit_log
                    )
                else:
                    await _with_adapters(config, store, stop, ready, audit_log, adapters)


async def _with_adapters(
    config: AreaConfig,
    store: TrackingStore,
    stop: asyncio.Event,
    ready: asyncio.Event,
    audit_log: Path | None,
    adapters: Sequence[str],
) -> None:
    """The router, then the adapters once its topology is declared; either failing stops both."""
    router = asyncio.create_task(
        run_router(config, store, stop, ready, reload_on_sighup=True, audit_path=audit_log)
    )
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({router, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if router.done():
        router.result()  # the router failed to start: its error
        return
    try:
        await run_adapters(config, adapters, stop, reload_on_sighup=True)
    finally:
        stop.set()
        await router


def run(args: argparse.Namespace) -> int:
    logs.configure(json=args.json_logs)
    config = load_config(args.config)
    asyncio.run(serve(config, args.metrics_listen, args.audit_log, args.with_adapters))
    return 0
