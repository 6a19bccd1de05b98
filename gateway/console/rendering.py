"""Server-side rendering: Jinja2 with autoescape on, and the filters every page uses.

Every value a page shows goes through ``printable`` too: ids and reasons come
from outside the gateway, and a bidi control character could make one id
read as another.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.console.accounts import Role
from gateway.console.state import session_of
from gateway.views.timeline import printable, timestamp

NAV = (
    ("/", "Overview"),
    ("/deadlines", "Deadlines"),
    ("/quarantine", "Quarantine"),
    ("/keys", "Keys and agreements"),
)
OPERATOR_NAV = (("/audit", "Operator audit"),)


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["p"] = lambda value: "-" if value is None else printable(str(value))
    env.filters["ts"] = lambda at: "-" if at is None else timestamp(at)
    env.globals["case_url"] = case_url
    env.globals["quarantine_url"] = quarantine_url


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    session = session_of(request)
    account = session.account
    operator = account is not None and account.role is Role.OPERATOR
    nav = NAV + (OPERATOR_NAV if operator else ())
    return aiohttp_jinja2.render_template(
        name,
        request,
        {
            "account": account,
            "csrf": session.csrf,
            "nav": nav,
            "operator": operator,  # sees the actions; a viewer sees none
            "path": request.path,
            **context,
        },
        status=status,
    )


def case_url(correlation_id: str) -> str:
    """A case's page. The id goes in the query: a correlation id may hold '/' and '.'."""
    return f"/case?{urlencode({'id': correlation_id})}"


def quarantine_url(entry_id: str) -> str:
    """A quarantine entry's page."""
    return f"/quarantine/entry?{urlencode({'id': entry_id})}"


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)
