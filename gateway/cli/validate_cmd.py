"""`mash-gateway validate FILE...`: check canonical XML files before they are sent.

Reports every file, not just the first bad one: good files on stdout as
``FILE: ok (Type)``, every problem of a bad file on stderr, exit 1 if any
file failed. The problems quote the file's own values: this is the sender's
view of its own data, not a log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.cli.envelope_cmds import read_file
from gateway.core import schemas
from gateway.core.errors import GatewayError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check payload or envelope-header XML files against the gateway schemas",
        description="Check each FILE against the schema for its root element and run the "
        "identifier check digits (NHS number, UPN, PNC ID).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path)
    parser.set_defaults(handler=run)


def check_file(path: Path) -> str:
    """The message type of a valid file; raises GatewayError naming the file otherwise."""
    root = schemas.validate(read_file(path), str(path))
    return schemas.message_type(root, str(path))


def run(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            kind = check_file(path)
        except GatewayError as exc:
            failed = True
            print(exc, file=sys.stderr)
        else:
            print(f"{path}: ok ({kind})")
    return 1 if failed else 0
