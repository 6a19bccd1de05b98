"""`mash-gateway console` as a running service: the app, its listener, and what it polls.

TLS is required off loopback: a console that shows who owes what, and
takes operators' passwords, never listens in clear beyond this machine. The
context comes from gateway/infra/tls.py like every other listener's.
Queue depths are polled from the broker in the background (passive
declares as the router's login, gateway/services/queue_depths.py), and the
other services' /readyz likewise (``readiness``), so a page never waits on
the broker or a service; an unreachable one shows as such. The console's
own /healthz and /readyz (its store takes a write) need no sign-in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.broker.credentials import router_login
from gateway.config.area_config import AreaConfig
from gateway.config.config_checks import LOOPBACK_HOSTS
from gateway.console import app as console_app
from gateway.console.accounts import Accounts, users_path
from gateway.console.operator_audit import OperatorAudit
from gateway.console.readiness import Services, watching
from gateway.console.state import Console
from gateway.core.errors import GatewayError
from gateway.infra import tls
from gateway.services import health, queue_depths
from gateway.store import opened_store

DEFAULT_PORT = 8480
POLL_S = 5.0


class ConsoleError(GatewayError):
    """The console cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class Listening:
    url: str
    port: int


def check_listen(host: str, cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise ConsoleError("--tls-cert and --tls-key go together")
    if cert is None and host.strip("[]") not in LOOPBACK_HOSTS:
        raise ConsoleError(
            f"the console listens in clear only on loopback; give --tls-cert and --tls-key "
            f"to listen on {host}"
        )


@asynccontextmanager
async def serving(
    config: AreaConfig,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    cert: Path | None = None,
    key: Path | None = None,
    poll_broker: bool = True,
    services: Sequence[tuple[str, str]] = (),
) -> AsyncIterator[Listening]:
    """Serve the console until the block ends; yields its address.

    ``services``: (name, /readyz URL) of each service the overview shows.
    """
    check_listen(host, cert, key)
    context = tls.server_context(cert, key) if cert is not None and key is not None else None
    async with opened_store(config.store_url) as store:
        audit = OperatorAudit(config, store)
        console = Console(
            config,
            store,
            Accounts(users_path(config)),
            audit,
            context is not None,
            services=Services(dict(services)),
        )
        runner = web.AppRunner(console_app.build(console), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=context)
            await site.start()
            bound = int(runner.addresses[0][1])
            scheme = "https" if context is not None else "http"
            shown = f"[{host}]" if ":" in host else host
            listening = Listening(f"{scheme}://{shown}:{bound}/", bound)
            async with AsyncExitStack() as background:
                writable = health.store_writable(store.check_writable)
                background.enter_context(health.READINESS.watching("store (console)", writable))
                if poll_broker:
                    await background.enter_async_context(
                        queue_depths.watching(
                            router_login(config).url, config.inbox_agencies, POLL_S
                        )
                    )
                await background.enter_async_context(watching(console.services))
                yield listening
        finally:
            await runner.cleanup()
