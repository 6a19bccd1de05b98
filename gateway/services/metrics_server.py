"""Serves ``/metrics`` over HTTP (aiohttp) beside a service, without holding up its messages.

Beside it, ``/healthz`` (the process runs) and ``/readyz`` (every check the
service registered in ``health.READINESS`` passes; 503 naming what fails).

The exposition is generated in a worker thread (``asyncio.to_thread``): the
event loop only hands over the bytes, so a scrape, or many, during heavy
load costs the message flow a thread switch, never the time of rendering
every series. Only these three GETs exist; anything else is 404.

Services share the helpers here: ``add_listen_argument`` gives a command
``--metrics-listen HOST:PORT`` (over ``[metrics].listen``: each service on one
host needs its own port), ``listen_address`` picks the address, and
``serving`` runs the server for the duration of an ``async with``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway.config.area_config import AreaConfig, ConfigError
from gateway.config.metrics_config import Listen, parse_listen
from gateway.services import health, metrics

log = structlog.get_logger("gateway.services.metrics")


def add_listen_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics here (default: [metrics].listen in the config; "
        "without either, no metrics endpoint)",
    )


def listen_address(config: AreaConfig, override: str | None) -> Listen | None:
    """``--metrics-listen`` if given, else the config's ``[metrics].listen``, else None (off)."""
    if override is None:
        return config.metrics
    return parse_listen(override, "--metrics-listen", lambda key, problem: ConfigError(problem))


async def _scrape(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, metrics.REGISTRY)
    # The classic text format: what every Prometheus 2.x (Debian's included) negotiates.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


async def readyz(request: web.Request) -> web.Response:
    verdict = await health.READINESS.verdict()
    return web.json_response(
        {"ready": verdict.ready, "checks": verdict.checks}, status=200 if verdict.ready else 503
    )


@asynccontextmanager
async def serving(listen: Listen | None) -> AsyncIterator[int | None]:
    """Serve ``/metrics`` on ``listen`` inside the block; yields the bound port (None: off)."""
    if listen is None:
        yield None
        return
    app = web.Application()
    app.router.add_get("/metrics", _scrape)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, listen.host, listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror}") from None
        port = int(runner.addresses[0][1])
        log.info("metrics.listening", address=str(Listen(listen.host, port)))
        yield port
    finally:
        await runner.cleanup()
