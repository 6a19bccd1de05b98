"""`mash-gateway track MESSAGE_ID | --correlation ID`: where a message, or a whole case, has got to.

Reads the tracking store named by the area config (WAL lets it read while
the router writes) and prints ids, types, agencies, states, times and
reasons: the store holds no payload, and the view shows nothing else. A
case also shows its deadlines, their status and every escalation.
"""

from __future__ import annotations

import argparse
import asyncio

from gateway.config.area_config import AreaConfig, load_config
from gateway.infra.clock import utc_now
from gateway.services.tracking import case_report, message_report
from gateway.store import opened_store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "track", help="show a message's timeline, or with --correlation a whole case"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("message_id", nargs="?", metavar="MESSAGE_ID")
    which.add_argument("--correlation", metavar="ID", help="show every message of the case ID")
    parser.add_argument("--json", action="store_true", help="JSON instead of text")
    parser.set_defaults(handler=run)


async def report(
    config: AreaConfig, message_id: str | None, correlation_id: str | None, as_json: bool = False
) -> str:
    where = f"[store].url in {config.path}"
    async with opened_store(config.store_url) as store:
        if correlation_id is not None:
            return await case_report(store, correlation_id, where, utc_now(), as_json)
        assert message_id is not None  # argparse requires one of the two
        return await message_report(store, message_id, where, as_json)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(asyncio.run(report(config, args.message_id, args.correlation, args.json)))
    return 0
