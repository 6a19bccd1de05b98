"""`mash-gateway console [--host H --port P]`, `console add-user NAME --role viewer|operator`,
`console remove-user NAME` and `console users`.

The console serves until SIGTERM or SIGINT. ``add-user`` makes (or replaces)
a local account in the area's state folder and prints its password once:
generated unless ``--password-stdin`` gives one. Adding and removing an
account are operators' actions too, recorded on the console's audit chain
as done by the host account that ran the command.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from gateway.cli.stopping import stop_on_signals
from gateway.config.area_config import AreaConfig, load_config
from gateway.console.accounts import Accounts, Role, users_path
from gateway.console.operator_audit import OperatorAudit
from gateway.console.readiness import parse_service
from gateway.console.server import DEFAULT_PORT, serving
from gateway.core.audit_chain import OperatorAction
from gateway.infra import logs
from gateway.store import opened_store

HOST_ROLE = "host"  # who ran a command on the gateway host, as the audit chain names them


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "console",
        help="the web console (overview, deadlines, cases, quarantine, keys); add-user",
        description="Without an action, serve the console until SIGTERM or SIGINT.",
    )
    logs.add_json_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (%(default)s)")
    parser.add_argument("--tls-cert", type=Path, help="certificate (required off loopback)")
    parser.add_argument("--tls-key", type=Path, help="its private key")
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a service whose /readyz the overview shows, e.g. "
        "router=http://127.0.0.1:9464/readyz (repeat for each)",
    )
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="console_action", metavar="[ACTION]")
    add = actions.add_parser("add-user", help="make or replace a local console account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(handler=run_add_user)
    remove = actions.add_parser("remove-user", help="remove a console account")
    remove.add_argument("name")
    remove.set_defaults(handler=run_remove_user)
    users = actions.add_parser("users", help="list the console accounts and their roles")
    users.set_defaults(handler=run_users)


async def serve(config: AreaConfig, args: argparse.Namespace) -> None:
    stop = stop_on_signals()
    async with serving(
        config,
        args.host,
        args.port,
        args.tls_cert,
        args.tls_key,
        services=[parse_service(s) for s in args.service],
    ) as listening:
        print(f"console at {listening.url}", flush=True)
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    logs.configure(json=args.json_logs)
    asyncio.run(serve(load_config(args.config), args))
    return 0


async def record(config: AreaConfig, action: str, name: str) -> None:
    """Put an account change on the console's audit chain, done by this host's user."""
    async with opened_store(config.store_url) as store:
        await OperatorAudit(config, store).record(
            OperatorAction(getpass.getuser(), HOST_ROLE, action, name)
        )


async def add_user(config: AreaConfig, name: str, role: Role, password: str | None) -> str:
    """Make the account and record who made it; returns its password."""
    made = Accounts(users_path(config)).add(name, role, password)
    await record(config, f"add-user {role.value}", name)
    return made


def run_add_user(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    given = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    password = asyncio.run(add_user(config, args.name, Role(args.role), given))
    print(f"account {args.name} ({args.role}) in {users_path(config)}")
    if given is None:
        print(f"password: {password}")
    return 0


def run_remove_user(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    Accounts(users_path(config)).remove(args.name)
    asyncio.run(record(config, "remove-user", args.name))
    print(f"account {args.name} removed; a running console signs it out at its next request")
    return 0


def run_users(args: argparse.Namespace) -> int:
    for account in Accounts(users_path(load_config(args.config))).names():
        print(f"{account.name}  {account.role.value}")
    return 0
