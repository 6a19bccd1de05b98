"""The console's middlewares: security headers, a session on every request, CSRF, sign-in.

Deny by default: every path but the sign-in page, the stylesheet and
``/healthz`` and ``/readyz`` (which start no session) needs a signed-in
account; every POST needs the session's CSRF token (403 otherwise, before
any handler runs); an action needs the operator role; every response forbids scripts,
framing and caching of pages. The Content-Security-Policy allows the
console's own stylesheet and images and nothing else: no script at all,
inline or not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.console.accounts import Role
from gateway.console.state import SESSION, console_of, session_of
from gateway.infra.clock import utc_now

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
OPEN_PATHS = ("/sign-in", "/static/")
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})  # for compose and systemd: no session at all
CSRF_FIELD = "csrf"
HSTS = "max-age=31536000"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _harden(request, exc)
        raise
    _harden(request, response)
    return response


def _harden(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    if console_of(request).tls:
        response.headers["Strict-Transport-Security"] = HSTS


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the request's session, starting an anonymous one (and its cookie) if none."""
    if request.path in HEALTH_PATHS and request.method in ("GET", "HEAD"):
        return await handler(request)
    console = console_of(request)
    session = console.sessions.find(request.cookies.get(console.cookie), utc_now())
    fresh = session is None
    if session is None:
        session = console.sessions.start(utc_now())
    request[SESSION] = session
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect to sign in still carries the new cookie
        if fresh and session_of(request) is session:
            set_cookie(request, exc, session.id)
        raise
    if fresh and session_of(request) is session:
        set_cookie(request, response, session.id)
    return response


def set_cookie(request: web.Request, response: web.StreamResponse, session_id: str) -> None:
    console = console_of(request)
    response.set_cookie(
        console.cookie,
        session_id,
        path="/",
        httponly=True,
        secure=console.tls,
        samesite="Strict",
    )


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse, 403, any POST whose form does not carry its session's token."""
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        offered = form.get(CSRF_FIELD)
        if not session_of(request).token_matches(offered if isinstance(offered, str) else None):
            raise web.HTTPForbidden(
                text="refused: the form's CSRF token is missing or wrong; reload the page"
            )
    return await handler(request)


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only a signed-in account passes, and only while it is still in the accounts file."""
    if request.path in HEALTH_PATHS and request.method in ("GET", "HEAD"):
        return await handler(request)
    session = session_of(request)
    if session.account is not None:
        session.account = console_of(request).accounts.current(session.account.name)
    if request.path.startswith(OPEN_PATHS) or session.account is not None:
        return await handler(request)
    if request.method in ("GET", "HEAD"):
        raise web.HTTPSeeOther("/sign-in")
    raise web.HTTPForbidden(text="sign in first")


def require_operator(request: web.Request) -> None:
    """Viewers read; only operators reach an action (403 otherwise)."""
    account = session_of(request).account
    if account is None or account.role is not Role.OPERATOR:
        raise web.HTTPForbidden(text="this needs the operator role")


MIDDLEWARES = (security_headers, sessions, csrf, signed_in)
