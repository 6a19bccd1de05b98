"""`mash-gateway init DIR`: a demo area with fresh keys for every agency (demo/setup.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.demo.setup import create_area

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/mash-demo"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("init", help="create a demo area (config and fresh keys) in DIR")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL)
    parser.add_argument("--force", action="store_true", help="replace an existing area in DIR")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    create_area(args.dir, args.broker_url, args.force)
    return 0
