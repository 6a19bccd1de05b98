"""The console on a real area: the demo's (one run per test session), served on a free port.

Shared by the HTTP tests (test_console_http.py) and the browser tests
(test_console_browser.py): the demo area holds a real case whose payloads
are full of personal data, none of which any page may show. The demo's
vhost is gone once it has run, so the quarantine's actions are tried on a
running exchange instead (``quarantined``), with a message held there.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.broker.vhost import BrokerAdmin
from gateway.config.area_config import AreaConfig, load_config
from gateway.console.accounts import Accounts, Role, users_path
from gateway.console.server import Listening, serving
from gateway.core.quarantine import Filter
from gateway.demo import flow as demo_flow
from gateway.services.quarantine_keeper import QuarantineKeeper
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange
from tests.integration.quarantine_harness import quarantine_exchange, refused_referral

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class DemoArea:
    config_path: Path
    case: str

    @property
    def config(self) -> AreaConfig:
        return load_config(str(self.config_path))


@pytest.fixture(scope="session")
def demo_area(broker_admin: object) -> Iterator[DemoArea]:
    """The demo run once: probation's request escalated to level 2 and answered late."""
    # A short path: gpg-agent's socket under the area's keyring must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="mash-con-") as tmp:
        area = Path(tmp, "area")
        case = asyncio.run(demo_flow.run(area, AMQP_URL, say=lambda _: None))
        add_accounts(load_config(str(area / "gateway.toml")))
        yield DemoArea(area / "gateway.toml", case)


def add_accounts(config: AreaConfig) -> None:
    """olive, an operator, and victor, a viewer."""
    accounts = Accounts(users_path(config))
    accounts.add("olive", Role.OPERATOR, PASSWORD)
    accounts.add("victor", Role.VIEWER, PASSWORD)


@dataclass(frozen=True)
class Quarantined:
    """A running exchange with police's Referral to education held in quarantine."""

    exchange: Exchange
    entry_id: str
    message_id: str

    @property
    def config(self) -> AreaConfig:
        return load_config(str(self.exchange.config.path))  # as on disk: the shared store


@pytest.fixture
async def quarantined(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Quarantined]:
    async with quarantine_exchange(broker_admin, tmp_path) as exchange:
        message_id = await refused_referral(exchange)
        config = load_config(str(exchange.config.path))
        async with QuarantineKeeper(config, exchange.router_store) as keeper:
            (entry,) = await keeper.entries(Filter())  # what the keeper service does
        add_accounts(config)
        yield Quarantined(exchange, entry.entry_id, message_id)


@asynccontextmanager
async def console_on(config: AreaConfig, **options: object) -> AsyncIterator[Listening]:
    async with serving(config, port=0, poll_broker=False, **options) as listening:  # type: ignore[arg-type]
        yield listening


class Client:
    """A browser's worth of HTTP: a cookie jar, and the CSRF token of the last page read."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.http = session
        self.base = base.rstrip("/")
        self.csrf: str | None = None

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, allow_redirects=False) as response:
            text = await response.text()
        found = CSRF.search(text)
        if found:
            self.csrf = found[1]
        return response.status, text, response

    async def post(
        self, path: str, form: dict[str, str], with_csrf: bool = True
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        data = {**form, "csrf": self.csrf or ""} if with_csrf else dict(form)
        async with self.http.post(self.base + path, data=data, allow_redirects=False) as response:
            return response.status, await response.text(), response

    async def sign_in(self, name: str, password: str = PASSWORD) -> int:
        await self.get("/sign-in")
        status, _, _ = await self.post("/sign-in", {"name": name, "password": password})
        await self.get("/")  # the new session's token
        return status


@asynccontextmanager
async def client(listening: Listening) -> AsyncIterator[Client]:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    connector = aiohttp.TCPConnector(ssl=False)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as session:
        yield Client(session, listening.url)
