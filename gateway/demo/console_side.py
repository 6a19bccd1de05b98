"""The demo's console: two one-time accounts for this run, and the console kept open on its area.

The accounts (``demo-operator`` and ``demo-viewer``) get fresh random
passwords on every run, printed once, and each signs in once and never
again: a one-time sign-in for this run and no other. More accounts:
`mash-gateway console add-user`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.config.area_config import AreaConfig
from gateway.console.accounts import Accounts, Role, users_path
from gateway.console.rendering import case_url
from gateway.console.server import DEFAULT_PORT, serving

ACCOUNTS = (("demo-operator", Role.OPERATOR), ("demo-viewer", Role.VIEWER))


def make_accounts(config: AreaConfig) -> dict[str, str]:
    """Each demo account and its password for this run."""
    accounts = Accounts(users_path(config))
    return {name: accounts.add(name, role, once=True) for name, role in ACCOUNTS}


def sign_in_lines(passwords: dict[str, str]) -> list[str]:
    return [
        f"  {name} ({role.value}), one-time password {passwords[name]}" for name, role in ACCOUNTS
    ]


def keep_open(
    stop: Callable[[], asyncio.Event], say: Callable[[str], None], port: int = DEFAULT_PORT
) -> Callable[[AreaConfig, str], Awaitable[None]]:
    """The demo's ``then``: serve the console on the demo area until ``stop()`` is set."""

    async def serve(config: AreaConfig, case: str) -> None:
        passwords = make_accounts(config)
        stopped = stop()
        async with serving(config, port=port) as listening:
            say(f"\nThe console is open at {listening.url} (Ctrl-C stops it). Sign in as")
            for line in sign_in_lines(passwords):
                say(line)
            say(f"The case: {listening.url.rstrip('/')}{case_url(case)}")
            await stopped.wait()

    return serve
