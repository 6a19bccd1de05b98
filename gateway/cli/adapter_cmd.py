"""`mash-gateway adapter AGENCY...`: run agency adapters until SIGTERM or SIGINT.

Each AGENCY needs an ``[[adapters]]`` table in gateway.toml (see
gateway/config/adapter_config.py); with no AGENCY every configured adapter runs. A stop
lets the file or request in hand finish. ``--issue-token`` prints a new
HTTP bearer token for each AGENCY once (only its digest is kept) and exits.
SIGHUP re-reads gateway.toml: each adapter's edge takes the new registry and
re-reads its private keys, so a revoked key signs nothing more.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters import http_tokens
from adapters.framework import adapter_config, run_adapters
from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import AreaConfig, ConfigError, load_config
from gateway.config.certificates import adapter_certificates, broker_certificates
from gateway.infra import logs
from gateway.services import certificate_watch, metrics_server


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("adapter", help="run agency adapters (file drop, HTTP)")
    parser.add_argument("agencies", nargs="*", metavar="AGENCY", help="default: every adapter")
    logs.add_json_argument(parser)
    parser.add_argument(
        "--issue-token",
        action="store_true",
        help="print a new HTTP bearer token for each AGENCY (the old one stops working) and exit",
    )
    metrics_server.add_listen_argument(parser)
    parser.set_defaults(handler=run)


async def serve(config: AreaConfig, agencies: list[str], metrics_listen: str | None) -> None:
    stop = stop_on_signals()
    certificates = adapter_certificates(config, agencies) | broker_certificates(config)
    async with (
        metrics_server.serving(metrics_server.listen_address(config, metrics_listen)),
        certificate_watch.watching(certificates),
    ):
        await run_adapters(config, agencies, stop, reload_on_sighup=True)


def run(args: argparse.Namespace) -> int:
    logs.configure(json=args.json_logs)
    config = load_config(args.config)
    if args.issue_token:
        return issue_tokens(config, args.agencies)
    asyncio.run(serve(config, args.agencies, args.metrics_listen))
    return 0


def issue_tokens(config: AreaConfig, agencies: list[str]) -> int:
    if not agencies:
        raise ConfigError("--issue-token needs the AGENCY whose token to issue")
    for agency in agencies:
        if adapter_config(config, agency).transport != "http":
            raise ConfigError(f"adapter {agency}: tokens are for HTTP adapters only")
        token = http_tokens.issue(config.private_keys_dir, agency)
        print(f"{agency}: {token}")
    return 0
