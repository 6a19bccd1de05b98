"""`mash-gateway` command line: parses arguments and dispatches to one module per command group.

Each command module exposes ``register(subparsers)`` and sets ``handler`` on
its parser; a handler returns the process exit code. Expected failures are
GatewayErrors and print as one line naming the file, key or check that failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from gateway.cli import (
    adapter_cmd,
    audit_cmds,
    broker_cmds,
    console_cmd,
    demo_cmd,
    directory_cmds,
    envelope_cmds,
    health_cmd,
    inbox_cmd,
    init_cmd,
    intake_cmd,
    keys_cmds,
    messages_cmd,
    overdue_cmd,
    partner_cmds,
    quarantine_cmds,
    report_cmd,
    run_cmd,
    send_cmd,
    track_cmd,
    validate_cmd,
)
from gateway.core.errors import GatewayError
from gateway.infra import logs

__all__ = [
    "build_parser",
    "main",
]

COMMAND_MODULES = (
    demo_cmd,
    init_cmd,
    keys_cmds,
    validate_cmd,
    envelope_cmds,
    broker_cmds,
    directory_cmds,
    partner_cmds,
    run_cmd,
    send_cmd,
    inbox_cmd,
    track_cmd,
    messages_cmd,
    overdue_cmd,
    report_cmd,
    audit_cmds,
    quarantine_cmds,
    adapter_cmd,
    intake_cmd,
    console_cmd,
    health_cmd,
)

EXIT_FAILURE = 1
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader went away
DISTRIBUTION = "mash-gateway"


def installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mash-gateway",
        description="Secure message-exchange gateway for a Multi-Agency Safeguarding Hub.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    parser.add_argument(
        "--config",
        help="path to gateway.toml (default: $MASH_GATEWAY_CONFIG, then ./gateway.toml)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(quiet=True)  # stdout is the command's own output; services raise the level
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        # The reader went away (`keys list | head -1`): that is not an error worth a
        # traceback. Point stdout at /dev/null so the exit's own flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    except GatewayError as exc:
        print(f"mash-gateway {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return code
