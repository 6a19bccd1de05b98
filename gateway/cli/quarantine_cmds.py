"""`mash-gateway quarantine list|show|release|discard|keep`: what was refused, and what to do.

A thin shell over ``QuarantineKeeper`` (gateway/services/quarantine_keeper.py),
which holds the logic the console shares. Every command first takes what
waits on ``gateway.quarantine`` into the store, so it works without the
``keep`` service running; ``keep`` does that continuously, expires copies
past the retention period and serves the gauges the alert reads.

Who did it: ``--operator``, else the OS user running the command; it goes
into the keeper's audit chain with the action.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time

from gateway.cli.periods import day
from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.quarantine import Entry, Filter, Status
from gateway.infra import logs
from gateway.services import health, metrics_server
from gateway.services.quarantine_keeper import Outcome, QuarantineKeeper
from gateway.store import opened_store
from gateway.views import quarantine as view

EXIT_FAILED_AGAIN = 4
EXIT_NOT_JUDGED = 5
DEFAULT_WAIT_S = 15.0
KEEP_INTERVAL_S = 5.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "quarantine", help="list, show, release or discard quarantined messages"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="held messages, oldest first, with their check")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.add_argument("--since", type=day, metavar="YYYY-MM-DD", help="quarantined from then")
    listing.add_argument("--check", metavar="CHECK", help="only this failed check, e.g. policy")
    listing.add_argument("--agency", metavar="A", help="only messages from or to agency A")
    listing.add_argument(
        "--status",
        choices=[*(s.value for s in Status), "all"],
        default=Status.HELD.value,
        help="held (the default), released, discarded, expired or all",
    )
    listing.add_argument("--limit", type=int, default=100, help="entries to show (default 100)")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one entry: header facts, check, reason; no payload")
    show.add_argument("entry_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="JSON instead of text")
    show.set_defaults(handler=run_show)

    release = actions.add_parser(
        "release", help="send the original envelope to the router again, once its cause is fixed"
    )
    release.add_argument("entry_id", metavar="ID")
    _operator_option(release)
    release.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"wait this long for the router's verdict (default {DEFAULT_WAIT_S:g}; 0: do not)",
    )
    release.set_defaults(handler=run_release)

    discard = actions.add_parser("discard", help="drop a quarantined message for good")
    discard.add_argument("entry_id", metavar="ID")
    discard.add_argument(
        "--reason", required=True, help="why, for the audit trail (no personal data)"
    )
    _operator_option(discard)
    discard.set_defaults(handler=run_discard)

    keep = actions.add_parser(
        "keep", help="the keeper service: take copies in, expire old ones, serve the gauges"
    )
    logs.add_json_argument(keep)
    metrics_server.add_listen_argument(keep)
    keep.set_defaults(handler=run_keep)


def _operator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--operator", help="who is doing this, for the audit trail (default: the OS user)"
    )


def operator_of(args: argparse.Namespace) -> str:
    return str(args.operator or getpass.getuser())


@asynccontextmanager
async def _keeper(config: AreaConfig) -> AsyncIterator[QuarantineKeeper]:
    """The keeper over the area's store, both open for the block."""
    async with opened_store(config.store_url) as store, QuarantineKeeper(config, store) as keeper:
        yield keeper


async def _keeper_list(config: AreaConfig, which: Filter) -> list[Entry]:
    async with _keeper(config) as keeper:
        return await keeper.entries(which)


def run_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    since = datetime.combine(args.since, time(), UTC) if args.since else None
    status = None if args.status == "all" else Status(args.status)
    which = Filter(since, args.check, args.agency, status, args.limit)
    entries = asyncio.run(_keeper_list(config, which))
    print(view.list_json(entries) if args.json else view.list_text(entries))
    return 0


def run_show(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def show() -> str:
        async with _keeper(config) as keeper:
            shown = await keeper.show(args.entry_id)
        render = view.show_json if args.json else view.show_text
        return render(shown.entry, shown.state)

    print(asyncio.run(show()))
    return 0


def run_release(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def release() -> tuple[Entry, Outcome | None]:
        async with _keeper(config) as keeper:
            released = await keeper.release(args.entry_id, operator_of(args))
            if args.wait <= 0:
                return released, None
            return released, await keeper.outcome(released, args.wait)

    released, outcome = asyncio.run(release())
    message = released.facts.message_id
    print(f"released {released.entry_id}: message {message} is back with the router")
    if outcome is None:
        return 0
    if outcome.again is not None:
        cause = outcome.again.cause
        print(
            f"it failed again ({cause.check}: {cause.reason}) and is back in quarantine as "
            f"{outcome.again.entry_id}; fix the cause and release that entry"
        )
        return EXIT_FAILED_AGAIN
    if outcome.judged:
        assert outcome.state is not None  # judged without a new entry: the router recorded it
        print(f"the router accepted it: {outcome.state.value}")
        return 0
    print(
        f"the router has not judged it within {args.wait:g} s (is `mash-gateway run` running?); "
        f"`mash-gateway track {message}` will show it"
    )
    return EXIT_NOT_JUDGED


def run_discard(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def discard() -> Entry:
        async with _keeper(config) as keeper:
            return await keeper.discard(args.entry_id, args.reason, operator_of(args))

    settled = asyncio.run(discard())
    print(f"discarded {settled.entry_id} (message {settled.facts.message_id})")
    return 0


def run_keep(args: argparse.Namespace) -> int:
    logs.configure(json=args.json_logs)
    config = load_config(args.config)
    asyncio.run(keep(config, args.metrics_listen))
    return 0


async def keep(config: AreaConfig, metrics_listen: str | None) -> None:
    """Collect every few seconds until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    async with opened_store(config.store_url) as store:
        listen = metrics_server.listen_address(config, metrics_listen)
        writable = health.store_writable(store.check_writable)
        collected = asyncio.Event()  # ready once the first collect has set the gauges
        with (
            health.READINESS.watching("store", writable),
            health.READINESS.watching("keeper", health.started(collected, "the keeper")),
        ):
            async with metrics_server.serving(listen), QuarantineKeeper(config, store) as keeper:
                await _keep(keeper, stop, collected)


async def _keep(keeper: QuarantineKeeper, stop: asyncio.Event, collected: asyncio.Event) -> None:
    while not stop.is_set():
        await keeper.collect()
        collected.set()
        try:
            await asyncio.wait_for(stop.wait(), KEEP_INTERVAL_S)
        except TimeoutError:
            continue
