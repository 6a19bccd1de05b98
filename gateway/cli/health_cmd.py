"""`mash-gateway health [URL]`: ask a service's /readyz, for compose healthchecks and systemd.

``--ca FILE`` verifies an https URL (the console's, under TLS) against that
certificate. Exit 0 when the service answers ready, 1 otherwise (not ready, not answering),
printing what its checks said. ``--wait`` keeps asking until it is ready or
the time is up, so a unit's ``ExecStartPost`` holds its start until then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from gateway.config.metrics_config import DEFAULT_PORT
from gateway.services.health import ask

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}/readyz"
POLL_S = 0.5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("health", help="ask a service's /readyz (exit 0 when ready)")
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="keep asking this long"
    )
    parser.add_argument(
        "--ca", type=Path, metavar="FILE", help="verify an https URL against this CA certificate"
    )
    parser.set_defaults(handler=run)


async def poll(url: str, wait: float, ca: Path | None = None) -> tuple[bool, str]:
    deadline = time.monotonic() + wait
    while True:
        ready, said = await ask(url, ca)
        if ready or time.monotonic() >= deadline:
            return ready, said
        await asyncio.sleep(POLL_S)


def run(args: argparse.Namespace) -> int:
    ready, said = asyncio.run(poll(args.url, args.wait, args.ca))
    try:
        print(json.dumps(json.loads(said), indent=2))
    except ValueError:
        print(said)
    return 0 if ready else 1
