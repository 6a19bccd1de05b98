"""`mash-gateway demo`: the README's first command.

A real exchange on the local RabbitMQ, in a fresh vhost (deleted afterwards),
with the embedded SQLite store: police refer, the hub asks three partners,
they answer, receipts flow back, the hub decides. The area and its store
stay in ``--area`` so `mash-gateway track` can show the case afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gateway.demo import flow as demo_flow
from gateway.infra import logs

DEFAULT_AREA = Path("demo-area")
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the multi-agency demo on local RabbitMQ")
    parser.add_argument(
        "--area",
        type=Path,
        default=DEFAULT_AREA,
        help="demo area directory, replaced on each run (default: %(default)s)",
    )
    parser.add_argument(
        "--broker-url",
        default=DEFAULT_BROKER,
        help="RabbitMQ to run on; the demo makes a fresh vhost (default: %(default)s)",
    )
    parser.add_argument("--logs", action="store_true", help="also print the services' log lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logs.configure(json=False, quiet=not args.logs)
    correlation_id = asyncio.run(demo_flow.run(args.area, args.broker_url))
    print(
        f"\nSee it again with: mash-gateway --config {args.area / 'gateway.toml'} "
        f"track --correlation {correlation_id}"
    )
    return 0
