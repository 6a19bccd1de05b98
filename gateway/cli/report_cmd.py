"""`mash-gateway report`: the performance framework's figures for a period, counts and durations.

Reads the tracking store (volumes, deadlines, rejections). Repeat referrals
need the subjects, which only the hub holds: ``--repeats-from DIR`` reads
the hub's received Referral files (as `mash-gateway inbox --as hub` writes
them, ``<message id>.xml``), matches subjects on their identifiers in
memory, and prints counts only.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from gateway.cli.periods import check_order, day
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.errors import GatewayError
from gateway.core.schemas import NAMESPACE
from gateway.core.xmlsafe import UnsafeXmlError, parse
from gateway.infra.clock import utc_now
from gateway.store import ReportReader, opened_store
from gateway.views import report, report_formats

DEFAULT_DAYS = 30
DEFAULT_REPEAT_DAYS = 28


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="volumes, timeliness, breaches, failures and repeat referrals of a period"
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=day,
        metavar="DATE",
        help=f"first day (default: {DEFAULT_DAYS} days before --to)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=day,
        metavar="DATE",
        help="last day, included (default: today)",
    )
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.add_argument(
        "--repeats-from",
        type=Path,
        metavar="DIR",
        help="the hub's received messages, to count repeat referrals",
    )
    parser.add_argument(
        "--repeat-days",
        type=int,
        default=DEFAULT_REPEAT_DAYS,
        metavar="N",
        help=f"a referral within N days of the last is a repeat ({DEFAULT_REPEAT_DAYS})",
    )
    parser.set_defaults(handler=run)  # fmt: skip


def period(start: date | None, end: date | None, today: date) -> tuple[datetime, datetime]:
    """[first day 00:00 UTC, the day after the last 00:00 UTC)."""
    last = end or today
    first = start or last - timedelta(days=DEFAULT_DAYS - 1)
    check_order(first, last)
    begin = datetime.combine(first, time(), UTC)
    return begin, datetime.combine(last + timedelta(days=1), time(), UTC)


async def referrals_in(
    folder: Path, store: ReportReader
) -> list[tuple[datetime, tuple[frozenset[str], ...]]]:
    """(routed time, each subject's keys) of each Referral file the store knows; others skip."""
    found = []
    for path in sorted(folder.glob("*.xml")):
        try:
            root = parse(path.read_bytes(), str(path))
        except (OSError, UnsafeXmlError):
            continue
        if root.tag != f"{{{NAMESPACE}}}Referral":
            continue
        record = await store.message(path.stem)
        if record is not None:
            found.append((record.created_at, report.referral_subjects(root)))
    return found


async def build(config: AreaConfig, args: argparse.Namespace) -> report.Report:
    now = utc_now()
    start, end = period(args.start, args.end, now.date())
    async with opened_store(config.store_url) as store:
        repeats = None
        if args.repeats_from is not None:
            if not args.repeats_from.is_dir():
                raise GatewayError(f"--repeats-from {args.repeats_from}: no such directory")
            referrals = await referrals_in(args.repeats_from, store)
            in_period = [(at, s) for at, s in referrals if start <= at < end]
            repeats = report.repeat_referrals(in_period, args.repeat_days)
        return report.build(
            start,
            end,
            now,
            await store.messages_between(start, end),
            await store.deadlines_between(start, end),
            await store.rejections_between(start, end),
            repeats,
        )


def run(args: argparse.Namespace) -> int:
    built = asyncio.run(build(load_config(args.config), args))
    print(report_formats.render(built, args.format), end="" if args.format == "csv" else "\n")
    return 0
