"""`mash-gateway demo`: the README's first command.

A real exchange on the local RabbitMQ, in a fresh vhost (deleted afterwards),
with the embedded SQLite store: police refer, the hub asks three partners,
they answer, receipts flow back, the hub decides. The area and its store
stay in ``--area`` so `mash-gateway track` and the console can show the case
afterwards; it prints a console sign-in made for this run, and ``--console``
keeps the console open on the area (the vhost kept until it stops).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import load_config
from gateway.console.rendering import case_url
from gateway.console.server import DEFAULT_PORT
from gateway.demo import console_side
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
    parser.add_argument(
        "--console",
        action="store_true",
        help="then keep the web console open on the demo area until Ctrl-C",
    )
    parser.add_argument(
        "--console-port", type=int, default=DEFAULT_PORT, help="its port (default %(default)s)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logs.configure(json=False, quiet=not args.logs)
    then = (
        console_side.keep_open(stop_on_signals, print, args.console_port) if args.console else None
    )
    correlation_id = asyncio.run(demo_flow.run(args.area, args.broker_url, then=then))
    config_path = args.area / "gateway.toml"
    print(
        f"\nSee it again with: mash-gateway --config {config_path} "
        f"track --correlation {correlation_id}"
    )
    if not args.console:
        config = load_config(str(config_path))
        print(
            f"or in the web console: mash-gateway --config {config_path} console, "
            f"then http://127.0.0.1:{DEFAULT_PORT}{case_url(correlation_id)}, signed in as"
        )
        for line in console_side.sign_in_lines(console_side.make_accounts(config)):
            print(line)
    return 0
