"""Signing in and out: a local account's name and password, checked against its argon2 hash.

A successful sign-in replaces the anonymous session with a new one (new id,
new CSRF token) and is audited with the account's name; a failed one says
only that the name or password is wrong, and is counted in the logs without
the name typed (it may be a password typed in the wrong box). Too many
failures from one address are refused for a while (``throttle``). The
argon2 check runs off the event loop: it takes tens of milliseconds by design.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from gateway.console.guard import set_cookie
from gateway.console.rendering import render
from gateway.console.state import SESSION, console_of, session_of
from gateway.core.audit_chain import OperatorAction
from gateway.infra.clock import utc_now

log = structlog.get_logger("gateway.console.sign_in")


async def form(request: web.Request) -> web.Response:
    if session_of(request).account is not None:
        raise web.HTTPSeeOther("/")
    return render(request, "sign_in.html", failed=False, throttled=False)


async def sign_in(request: web.Request) -> web.Response:
    console = console_of(request)
    address = request.remote or "unknown"
    if console.throttle.refused(address, utc_now()):
        log.warning("console.sign_in_throttled")
        return render(request, "sign_in.html", failed=False, throttled=True, status=429)
    posted = await request.post()
    name, password = str(posted.get("name", "")), str(posted.get("password", ""))
    account = await asyncio.to_thread(console.accounts.check, name, password)
    if account is None:
        console.throttle.failed(address, utc_now())
        log.warning("console.sign_in_refused")
        return render(request, "sign_in.html", failed=True, throttled=False, status=401)
    console.throttle.succeeded(address)
    console.sessions.end(session_of(request))
    session = console.sessions.start(utc_now(), account)
    request[SESSION] = session
    await console.audit.record(OperatorAction(account.name, account.role.value, "sign-in"))
    log.info("console.signed_in", operator=account.name, role=account.role.value)
    response = web.HTTPSeeOther("/")
    set_cookie(request, response, session.id)
    raise response


async def sign_out(request: web.Request) -> web.Response:
    console = console_of(request)
    session = session_of(request)
    account = session.account
    console.sessions.end(session)
    if account is not None:
        await console.audit.record(OperatorAction(account.name, account.role.value, "sign-out"))
    response = web.HTTPSeeOther("/sign-in")
    response.del_cookie(console.cookie, path="/")
    raise response
