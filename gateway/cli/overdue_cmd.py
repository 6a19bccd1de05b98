"""`mash-gateway overdue`: open and breached deadlines by agency and RAG, for the hub manager.

Exit status 0 when nothing is overdue and 3 when something is, so a
monitoring check or a morning script can act on it without parsing.
"""

from __future__ import annotations

import argparse
import asyncio

from gateway.config.area_config import AreaConfig, load_config
from gateway.infra.clock import utc_now
from gateway.store import opened_store
from gateway.views import overdue as overdue_view

EXIT_OVERDUE = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "overdue", help="open and breached deadlines by agency, kind and RAG (counts and ids)"
    )
    parser.add_argument(
        "--limit", type=int, default=50, help="overdue deadlines to list (default 50)"
    )
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.set_defaults(handler=run)


async def report(config: AreaConfig, limit: int, as_json: bool) -> tuple[str, bool]:
    """The report, and whether anything is overdue."""
    async with opened_store(config.store_url) as store:
        now = utc_now()
        counts = await store.deadline_counts(now)
        overdue = await store.overdue_deadlines(now, limit)
    render = overdue_view.as_json if as_json else overdue_view.text
    return render(counts, overdue, now), any(c.overdue for c in counts)


def run(args: argparse.Namespace) -> int:
    text, anything_overdue = asyncio.run(report(load_config(args.config), args.limit, args.json))
    print(text)
    return EXIT_OVERDUE if anything_overdue else 0
