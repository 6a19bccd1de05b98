"""The console's aiohttp application: routes, middlewares, templates, the stylesheet, and
/healthz and /readyz as every service serves them (gateway/services/metrics_server.py)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.console import pages, quarantine_pages, rendering, sign_in
from gateway.console.guard import MIDDLEWARES
from gateway.console.state import CONSOLE, Console
from gateway.services import metrics_server

STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 16 * 1024  # the console's forms are a few ids and a password


def build(console: Console) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_FORM_BYTES)
    app[CONSOLE] = console
    rendering.setup(app)
    app.router.add_get("/sign-in", sign_in.form)
    app.router.add_post("/sign-in", sign_in.sign_in)
    app.router.add_post("/sign-out", sign_in.sign_out)
    app.router.add_get("/", pages.overview)
    app.router.add_get("/deadlines", pages.deadlines)
    app.router.add_post("/cases", pages.find_case)
    app.router.add_get("/case", pages.case)
    app.router.add_get("/quarantine", quarantine_pages.listing)
    app.router.add_get("/quarantine/entry", quarantine_pages.entry)
    action = "/quarantine/{action:release|discard}"
    app.router.add_get(action, quarantine_pages.confirm)
    app.router.add_post(action, quarantine_pages.act)
    app.router.add_get("/keys", pages.keys)
    app.router.add_get("/audit", pages.operator_audit)
    app.router.add_get("/healthz", metrics_server.healthz)
    app.router.add_get("/readyz", metrics_server.readyz)
    app.router.add_static("/static/", STATIC, append_version=True)
    return app
