"""The quarantine pages: what was refused and why, and an operator's release or discard.

The list and an entry's page read the store (what the keeper service took
off ``gateway.quarantine``), so they never wait on the broker: header facts,
the failed check and its reason, never the payload (the sealed body is in
the store, and nothing here reads it). Release and discard each take two
steps, a confirmation page (GET) and its form (POST, with the session's
CSRF token), both for operators only, and are done by ``QuarantineKeeper``
(gateway/services/quarantine_keeper.py), the same code as `mash-gateway
quarantine release|discard`: it connects as its own broker user, records
the action in its audit chain with the operator's account name, and refuses
what may not be done (released twice, discarded, delivered since) with its
reason, shown on the entry's page.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.console.guard import require_operator
from gateway.console.rendering import quarantine_url, render
from gateway.console.state import console_of, session_of
from gateway.core.errors import GatewayError
from gateway.core.quarantine import Entry, Filter, QuarantineError, Status
from gateway.services.quarantine_keeper import QuarantineKeeper, quarantined_again

log = structlog.get_logger("gateway.console.quarantine")

PAGE = 100
MAX_REASON = 500


async def listing(request: web.Request) -> web.Response:
    wanted = request.query.get("status", Status.HELD.value)
    if wanted not in {*Status, "all"}:
        raise web.HTTPBadRequest(text="status: held, released, discarded, expired or all")
    status = None if wanted == "all" else Status(wanted)
    entries = await console_of(request).store.quarantined(Filter(status=status, limit=PAGE))
    return render(
        request,
        "quarantine.html",
        entries=entries,
        which=wanted,
        statuses=[*(s.value for s in Status), "all"],
        page=PAGE,
    )


async def entry(request: web.Request) -> web.Response:
    return await _entry_page(request, _entry_id(request.query.get("id")))


async def confirm(request: web.Request) -> web.Response:
    """The confirmation step: what will happen to which message, and the form that does it."""
    require_operator(request)
    action = request.match_info["action"]
    found = await _find(request, _entry_id(request.query.get("id")))
    return render(request, "quarantine_confirm.html", entry=found, action=action, problem=None)


async def act(request: web.Request) -> web.Response:
    """A confirmed release or discard, through the keeper; back to the entry's page."""
    require_operator(request)
    action = request.match_info["action"]
    form = await request.post()
    entry_id = _entry_id(str(form.get("id", "")))
    reason = str(form.get("reason", "")).strip()
    account = session_of(request).account
    assert account is not None  # require_operator passed
    if action == "discard" and not reason:
        found = await _find(request, entry_id)
        return render(
            request,
            "quarantine_confirm.html",
            entry=found,
            action=action,
            problem="A discard needs a reason: ids and checks, no personal data.",
            status=400,
        )
    console = console_of(request)
    try:
        async with QuarantineKeeper(console.config, console.store) as keeper:
            if action == "release":
                await keeper.release(entry_id, account.name)
            else:
                await keeper.discard(entry_id, reason[:MAX_REASON], account.name)
    except QuarantineError as exc:
        return await _entry_page(request, entry_id, problem=str(exc), status=409)
    except GatewayError as exc:  # the broker is unreachable, or its topology missing
        log.warning("console.quarantine_action_failed", action=action, reason=str(exc))
        return await _entry_page(request, entry_id, problem=str(exc), status=503)
    log.info(f"console.quarantine_{action}", entry=entry_id, operator=account.name)
    raise web.HTTPSeeOther(quarantine_url(entry_id))


async def _entry_page(
    request: web.Request, entry_id: str, problem: str | None = None, status: int = 200
) -> web.Response:
    store = console_of(request).store
    found = await _find(request, entry_id)
    record = await store.message(found.facts.message_id)
    released = found.status is Status.RELEASED
    return render(
        request,
        "quarantine_entry.html",
        entry=found,
        state=None if record is None else record.state.value,
        again=await quarantined_again(store, found) if released else None,
        problem=problem,
        status=status,
    )


async def _find(request: web.Request, entry_id: str) -> Entry:
    found = await console_of(request).store.quarantined_entry(entry_id)
    if found is None:
        raise web.HTTPNotFound(text=f"no quarantined message {entry_id!r}")
    return found


def _entry_id(raw: str | None) -> str:
    if not raw or len(raw) > 64:
        raise web.HTTPBadRequest(text="id: a quarantine entry's id, as the list shows it")
    return raw
