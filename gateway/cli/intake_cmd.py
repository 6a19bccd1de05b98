"""`mash-gateway intake`: the secure-mail intake (SMTP, STARTTLS required) until SIGTERM or SIGINT.

Mail from allowlisted domains becomes signed, encrypted exchange messages
from the domain's agency; everything else is refused with a 5.x.x reply
naming the reason. Settings come from ``[intake]`` in gateway.toml.
"""

from __future__ import annotations

import argparse
import asyncio

from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import AreaConfig, load_config
from gateway.config.certificates import broker_certificates, intake_certificates
from gateway.infra import logs
from gateway.intake.service import running_intake
from gateway.services import certificate_watch, health, metrics_server
from gateway.store import opened_store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("intake", help="run the secure-mail intake (SMTP)")
    logs.add_json_argument(parser)
    metrics_server.add_listen_argument(parser)
    parser.set_defaults(handler=run)


async def serve(config: AreaConfig, metrics_listen: str | None = None) -> None:
    stop = stop_on_signals()
    loaded = asyncio.Event()  # set once running_intake has loaded the TLS context
    async with opened_store(config.store_url) as store:
        certificates = intake_certificates(config) | broker_certificates(config)
        with (
            health.READINESS.watching("store", health.store_writable(store.check_writable)),
            health.READINESS.watching("tls", health.started(loaded, "the TLS context")),
        ):
            async with (
                metrics_server.serving(metrics_server.listen_address(config, metrics_listen)),
                certificate_watch.watching(certificates),
                running_intake(config, store) as intake,
            ):
                loaded.set()
                print(
                    f"intake listening on {intake.config.host}:{intake.port} "
                    f"for @{intake.config.hostname}",
                    flush=True,
                )
                await stop.wait()


def run(args: argparse.Namespace) -> int:
    logs.configure(json=args.json_logs)
    asyncio.run(serve(load_config(args.config), args.metrics_listen))
    return 0
