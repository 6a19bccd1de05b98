"""What every console request reads: the area, the store, accounts, sessions, the audit chain,
the other services' readiness."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from gateway.config.area_config import AreaConfig
from gateway.console.accounts import Accounts
from gateway.console.operator_audit import OperatorAudit
from gateway.console.readiness import Services
from gateway.console.sessions import Session, Sessions
from gateway.console.throttle import SignInThrottle
from gateway.store import TrackingStore

PLAIN_COOKIE = "mash-console"
# The __Host- prefix makes the browser refuse the cookie unless Secure, path /, no Domain.
TLS_COOKIE = "__Host-mash-console"


@dataclass
class Console:
    config: AreaConfig
    store: TrackingStore  # read by the pages; the quarantine keeper's actions write it
    accounts: Accounts
    audit: OperatorAudit
    tls: bool
    sessions: Sessions = field(default_factory=Sessions)
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    services: Services = field(default_factory=Services)  # the other services' readiness

    @property
    def cookie(self) -> str:
        return TLS_COOKIE if self.tls else PLAIN_COOKIE


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("session", Session)  # the request's session


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def session_of(request: web.Request) -> Session:
    return request[SESSION]
