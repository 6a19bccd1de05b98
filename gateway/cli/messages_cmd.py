"""`mash-gateway messages`: search the tracking store's metadata, newest first, a page at a time.

Filters by case, agency (sender or recipient), type, state and the days a
message was created in; ``--after`` takes the cursor the previous page
printed (keyset paging: gateway/core/message_search.py says why).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, time, timedelta

from gateway.cli.periods import check_order, day
from gateway.config.area_config import load_config
from gateway.core.lifecycle import State
from gateway.core.message_search import MessageQuery, Page, checked_limit, page_of, read_cursor
from gateway.store import opened_store
from gateway.views import messages as view


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "messages", help="search tracked messages by case, agency, type, state and period"
    )
    parser.add_argument("--case", metavar="C", help="messages of case (correlation id) C")
    parser.add_argument("--agency", metavar="A", help="messages from or to agency A")
    parser.add_argument("--type", metavar="T", help="message type, e.g. InformationRequest")
    parser.add_argument("--state", choices=[s.value for s in State], help="current state")
    parser.add_argument(
        "--from", dest="start", type=day, metavar="YYYY-MM-DD", help="created on or after"
    )
    parser.add_argument(
        "--to", dest="end", type=day, metavar="YYYY-MM-DD", help="created on or before"
    )
    parser.add_argument("--limit", type=int, default=50, help="messages per page (default 50)")
    parser.add_argument(
        "--after", metavar="CURSOR", help="the next page: the cursor a page printed"
    )
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.set_defaults(handler=run)


def query_of(args: argparse.Namespace) -> MessageQuery:
    if args.start and args.end:
        check_order(args.start, args.end)
    return MessageQuery(
        correlation_id=args.case,
        agency=args.agency,
        message_type=args.type,
        state=State(args.state) if args.state else None,
        start=datetime.combine(args.start, time(), UTC) if args.start else None,
        end=datetime.combine(args.end + timedelta(days=1), time(), UTC) if args.end else None,
        limit=checked_limit(args.limit),
        after=read_cursor(args.after) if args.after else None,
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    query = query_of(args)

    async def search() -> Page:
        async with opened_store(config.store_url) as store:
            return page_of(await store.search_messages(query), query.limit)

    page = asyncio.run(search())
    print(view.page_json(page) if args.json else view.page_text(page))
    return 0
