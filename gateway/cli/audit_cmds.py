"""`mash-gateway audit verify | export`: prove the audit trail is intact, and hand it over.

``verify`` exits 1 naming the first line that is wrong and how (edited,
removed, reordered, broken chain, bad checkpoint, appended out of band), or,
holding the file against the head the router kept in the tracking store at
its last checkpoint, what is missing from a file emptied or cut short
(``cut short``), or which record is not the one the store kept
(``rewritten``). The store's head is read before the file, so a router
writing meanwhile never makes the file look short. ``export`` verifies
first, so nobody exports a tampered trail unknowingly, then writes the
decisions of a date range as CSV or JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.cli.periods import check_order, day
from gateway.config.area_config import AreaConfig, load_config
from gateway.core import audit_chain
from gateway.core.errors import GatewayError
from gateway.core.records import AuditHead
from gateway.services import audit_log
from gateway.store import opened_store

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class AuditTrailBroken(GatewayError):
    """The audit file is missing, unreadable, or fails verification; the message names the line."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("audit", help="verify or export the hash-chained audit trail")
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = commands.add_parser("verify", help="check the chain and its signed checkpoints")
    _file_option(verify)
    verify.add_argument(
        "--live",
        action="store_true",
        help="the router is still writing: accept records after the last checkpoint",
    )
    verify.set_defaults(handler=run_verify)
    export = commands.add_parser("export", help="the decisions of a date range as CSV or JSON")
    _file_option(export)
    export.add_argument("--from", dest="start", type=day, required=True, metavar="DATE")
    export.add_argument("--to", dest="end", type=day, required=True, metavar="DATE")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.set_defaults(handler=run_export)


def _file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", type=Path, help="the audit file (default: state/audit.jsonl in the area)"
    )


def _read_lines(path: Path, kept: AuditHead | None) -> list[str]:
    try:
        return path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        held = "" if kept is None else f"; the store's head of this chain is record {kept.seq}"
        raise AuditTrailBroken(f"{path}: cannot read the audit log: {exc.strerror}{held}") from None


async def kept_head(config: AreaConfig, path: Path) -> AuditHead | None:
    """The head the router kept in the store for the chain in ``path``, if any."""
    async with opened_store(config.store_url) as store:
        return await store.audit_head(audit_log.chain_name(config, path))


def checked_lines(config: AreaConfig, path: Path, live: bool) -> tuple[list[str], str]:
    """The file's lines once they verify, and a one-line summary; AuditTrailBroken otherwise."""
    kept = asyncio.run(kept_head(config, path))  # before the file: the store is never ahead
    lines = _read_lines(path, kept)
    result = audit_chain.verify(lines, config.registry, config.gateway, open_tail=live, kept=kept)
    if result.finding is not None:
        raise AuditTrailBroken(f"{path}: {result.finding}")
    signed = "the tail may await its checkpoint" if live else "every record under one"
    held = (
        f"it holds the store's head, record {kept.seq}"
        if kept is not None
        else "the store keeps no head of this chain (no checkpoint of it was kept there)"
    )
    summary = (
        f"{path}: {result.records} records, {result.checkpoints} gateway-signed checkpoints; "
        f"chain intact, {signed}; {held}"
    )
    return lines, summary


def render_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=audit_chain.EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _cell(value) for name, value in row.items()})
    return out.getvalue()


def _cell(value: Any) -> str:
    """Lists joined by ';'; text a spreadsheet would run as a formula is quoted with a '."""
    if value is None:
        return ""
    text = ";".join(value) if isinstance(value, list) else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def render_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2, ensure_ascii=False) + "\n"


def run_verify(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _, summary = checked_lines(config, args.file or audit_log.default_path(config), args.live)
    print(summary)
    return 0


def run_export(args: argparse.Namespace) -> int:
    check_order(args.start, args.end)
    config = load_config(args.config)
    lines, _ = checked_lines(config, args.file or audit_log.default_path(config), live=True)
    rows = audit_chain.decisions_between(lines, args.start, args.end)
    sys.stdout.write(render_csv(rows) if args.format == "csv" else render_json(rows))
    return 0
