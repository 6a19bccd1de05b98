"""Liveness and readiness for ``/healthz`` and ``/readyz``, beside ``/metrics``.

- ``/healthz``: the process runs and its event loop answers. Restart it if not.
- ``/readyz``: every check the service registered passes: its broker
  connection is up, its consumers are attached, its store takes a write, and
  (the intake) its TLS context is loaded. Route no work to it, or alert, if
  not; it may recover by itself (a broker restart heals the robust connection).

Services register checks where the thing checked is made (an edge its
connection and inbox consumer, the router its queue, a service its store),
and remove them when it goes, in one process-wide ``READINESS`` (like the
metrics' registry: one HTTP server per process serves both). A process that
registered nothing yet is not ready: it is still starting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aio_pika.abc import AbstractChannel, AbstractConnection

from gateway.core.errors import GatewayError
from gateway.infra import tls

CHECK_TIMEOUT_S = 2.0
ASK_TIMEOUT_S = 5.0

# A check returns None when it passes, or what is wrong (no personal data: names of things).
Check = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Verdict:
    ready: bool
    checks: dict[str, str]  # name -> "ok" or what is wrong


@dataclass
class Readiness:
    """The named checks a process registered; ``verdict`` runs them all, each time-boxed."""

    checks: dict[str, Check] = field(default_factory=dict)

    @contextmanager
    def watching(self, name: str, check: Check) -> Iterator[None]:
        """Register ``check`` for the life of the block."""
        remove = self.add(name, check)
        try:
            yield
        finally:
            remove()

    def add(self, name: str, check: Check) -> Callable[[], None]:
        """Register ``check``; returns the call that removes it."""
        self.checks[name] = check

        def remove() -> None:
            if self.checks.get(name) is check:
                del self.checks[name]

        return remove

    async def verdict(self) -> Verdict:
        if not self.checks:
            return Verdict(False, {"service": "starting: nothing registered yet"})
        names = sorted(self.checks)
        results = await asyncio.gather(*(_time_boxed(self.checks[n]) for n in names))
        found = {n: r or "ok" for n, r in zip(names, results, strict=True)}
        return Verdict(all(r is None for r in results), found)


async def _time_boxed(check: Check) -> str | None:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except (GatewayError, OSError) as exc:
        return str(exc)


READINESS = Readiness()


def broker_connected(connection: AbstractConnection) -> Check:
    async def check() -> str | None:
        if connection.is_closed or not connection.connected.is_set():
            return "not connected to RabbitMQ (reconnecting)"
        return None

    return check


def consuming(connection: AbstractConnection, channel: AbstractChannel, queue: str) -> Check:
    """The consumer on ``queue`` is attached: its channel is open on a live connection.

    A robust channel restores its consumers after a reconnect, so an open channel
    on a connected connection is one whose consumer is attached.
    """

    async def check() -> str | None:
        if connection.is_closed or not connection.connected.is_set() or channel.is_closed:
            return f"not consuming {queue} (its channel is closed or reconnecting)"
        return None

    return check


def store_writable(probe: Callable[[], Awaitable[None]]) -> Check:
    """``probe`` takes a write lock or runs a write that changes nothing, raising if it cannot."""

    async def check() -> str | None:
        await probe()
        return None

    return check


def started(ready: asyncio.Event, what: str) -> Check:
    """Fails until ``ready`` is set: a service that registers its store before its consumers
    is not ready in between."""

    async def check() -> str | None:
        return None if ready.is_set() else f"{what} is starting"

    return check


async def ask(
    url: str, ca: Path | None = None, timeout_s: float = ASK_TIMEOUT_S
) -> tuple[bool, str]:
    """Whether another service's ``url`` (its /readyz) answered ready, and what it said (or why
    it did not answer): `mash-gateway health` and the console's overview ask it. An https URL
    is verified against ``ca`` (the system's CAs when None)."""
    context = tls.client_context(ca) if url.startswith("https:") else None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, ssl=context if context is not None else True) as response,
        ):
            body = await response.text()
            return response.status == 200, body
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"{url}: no answer ({exc or type(exc).__name__})"
