"""The other services' readiness for the overview: each one's ``/readyz``, asked in the background.

Which services: ``mash-gateway console --service NAME=URL`` (repeatable), as
compose and the systemd units name them (the console cannot guess where a
service serves its ``/readyz``). They are asked every few seconds, all at
once, so a page never waits on a stuck service; the overview shows the last
answer and when it came. What a service answers names checks and things
(``broker``, ``store``), never personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from gateway.core.errors import GatewayError
from gateway.infra.clock import utc_now
from gateway.services import health

POLL_S = 5.0
SAID_CHARS = 200  # a service that is not one of ours may answer anything: shown cut short


class ServiceError(GatewayError):
    """A ``--service`` is not NAME=URL."""


@dataclass(frozen=True)
class Answer:
    ready: bool
    said: str  # "ok", the failing checks, or why it did not answer
    at: datetime


@dataclass
class Services:
    """The services to ask (name -> /readyz URL) and their last answers."""

    urls: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)

    async def ask_all(self) -> None:
        names = list(self.urls)
        found = await asyncio.gather(*(health.ask(self.urls[n]) for n in names))
        at = utc_now()
        for name, (ready, said) in zip(names, found, strict=True):
            self.answers[name] = Answer(ready, summary(ready, said), at)


def parse_service(text: str) -> tuple[str, str]:
    """``NAME=URL`` with an http(s) URL, as ``--service`` takes it."""
    name, sep, url = text.partition("=")
    if not sep or not name.strip() or urlsplit(url.strip()).scheme not in ("http", "https"):
        raise ServiceError(
            f"--service {text!r}: expected NAME=URL, e.g. router=http://127.0.0.1:9464/readyz"
        )
    return name.strip(), url.strip()


def summary(ready: bool, said: str) -> str:
    """What a /readyz answer says, in one line: "ok", or each failing check and its problem."""
    try:
        checks = json.loads(said).get("checks", {})
    except (ValueError, AttributeError):
        return said[:SAID_CHARS]
    failing = [f"{name}: {problem}" for name, problem in checks.items() if problem != "ok"]
    if ready and not failing:
        return "ok"
    return "; ".join(failing)[:SAID_CHARS] or said[:SAID_CHARS]


@asynccontextmanager
async def watching(services: Services, interval: float = POLL_S) -> AsyncIterator[None]:
    """Ask every service every ``interval`` seconds for the duration of the block."""
    if not services.urls:
        yield
        return
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            await services.ask_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    task = asyncio.create_task(poll())
    try:
        yield
    finally:
        stop.set()
        await task
