"""The console's pages: overview, deadlines, a case, keys and agreements, the operators' audit
(quarantine's are in ``quarantine_pages``).

Each page reads only metadata (ids, agencies, types, states, times,
reasons) and reads it a bounded page at a time, so a page costs the same
with 100,000 messages in the store as with ten (bench/console.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from aiohttp import web

from gateway.console import certificates
from gateway.console.guard import require_operator
from gateway.console.rendering import case_url, day_start, render
from gateway.console.state import console_of
from gateway.core.deadline_rules import Deadline
from gateway.core.records import DeadlineEventEntry, TimelineEntry
from gateway.infra.clock import utc_now
from gateway.services import metrics
from gateway.views import validity
from gateway.views.timeline import deadline_status

PAGE = 50
BREACHED_DAYS = 30
EXPIRY_WARNING_DAYS = 30
AUDIT_LINES = 50


async def overview(request: web.Request) -> web.Response:
    console = console_of(request)
    now = utc_now()
    flows = await console.store.flow_counts(day_start(now), now + timedelta(days=1))
    counts = await console.store.recent_deadline_counts(now, now - timedelta(days=BREACHED_DAYS))
    return render(
        request,
        "overview.html",
        now=now,
        flows=flows,
        depths=metrics.QUEUE_DEPTHS.latest,
        agencies=console.config.inbox_agencies,
        overdue=[c for c in counts if c.overdue],
        services=console.services,
    )


async def deadlines(request: web.Request) -> web.Response:
    console = console_of(request)
    now = utc_now()
    after = _after(request.query.get("after"))
    overdue = await console.store.overdue_page(now, PAGE + 1, after)
    more = overdue[PAGE] if len(overdue) > PAGE else None
    return render(
        request,
        "deadlines.html",
        now=now,
        counts=await console.store.recent_deadline_counts(now, now - timedelta(days=BREACHED_DAYS)),
        overdue=overdue[:PAGE],
        next_after=None if more is None else _after_text(overdue[PAGE - 1]),
        first_page=after is None,
        coming=await console.store.coming_due(now, PAGE) if after is None else [],
        breached=(
            await console.store.breached_since(now - timedelta(days=BREACHED_DAYS), PAGE)
            if after is None
            else []
        ),
        breached_days=BREACHED_DAYS,
    )


async def find_case(request: web.Request) -> web.Response:
    """The search form: a case id, or a message id whose case is shown."""
    wanted = str((await request.post()).get("id", "")).strip()
    store = console_of(request).store
    message = await store.message(wanted) if wanted else None
    case = message.correlation_id if message is not None else wanted
    if not case:
        raise web.HTTPSeeOther("/")
    raise web.HTTPSeeOther(case_url(case))


async def case(request: web.Request) -> web.Response:
    store = console_of(request).store
    correlation_id = request.query.get("id", "")
    if not correlation_id:
        raise web.HTTPSeeOther("/")
    messages = await store.case_messages(correlation_id)
    if not messages:
        return render(request, "no_case.html", case=correlation_id, status=404)
    now = utc_now()
    timeline: dict[str, list[TimelineEntry]] = defaultdict(list)
    for entry in sorted(await store.case_timeline(correlation_id), key=lambda e: e.at):
        timeline[entry.message_id].append(entry)
    deadlines = await store.case_deadlines(correlation_id)
    events: dict[str, list[DeadlineEventEntry]] = defaultdict(list)
    for event in await store.case_deadline_events(correlation_id):
        events[event.deadline_id].append(event)
    return render(
        request,
        "case.html",
        case=correlation_id,
        messages=messages,
        timeline=timeline,
        deadlines=[(d, deadline_status(d, now, events[d.deadline_id])) for d in deadlines],
        events=events,
        now=now,
    )


async def keys(request: web.Request) -> web.Response:
    config = console_of(request).config
    now = utc_now()
    current = validity.current_key_ids(config.registry, now)
    return render(
        request,
        "keys.html",
        now=now,
        agencies=sorted(config.registry.agencies.values(), key=lambda a: a.id),
        keys=[
            (k, validity.key_status(k, current, now), validity.days_left(k.expires, now))
            for k in sorted(config.registry.keys.values(), key=lambda k: (k.agency, k.not_before))
        ],
        certificates=[
            (c, None if c.expires is None else validity.days_left(c.expires, now))
            for c in certificates.read_all(config)
        ],
        agreements=[
            (a, validity.agreement_status(a, now.date()), (a.valid_until - now.date()).days)
            for a in config.agreements
        ],
        warning_days=EXPIRY_WARNING_DAYS,
    )


async def operator_audit(request: web.Request) -> web.Response:
    """The console's own audit chain, newest first: operators only."""
    require_operator(request)
    records = await console_of(request).audit.recent(AUDIT_LINES)
    return render(request, "audit.html", records=records)


def _after(raw: str | None) -> tuple[datetime, str] | None:
    """The keyset position of a page: the last row's due time and id, as the link carries it."""
    if not raw:
        return None
    due, _, deadline_id = raw.partition("|")
    try:
        at = datetime.fromisoformat(due)
    except ValueError:
        raise web.HTTPBadRequest(text="after: expected DUE|DEADLINE_ID") from None
    if at.utcoffset() is None or not deadline_id:
        raise web.HTTPBadRequest(text="after: expected a UTC due time and a deadline id")
    return at, deadline_id


def _after_text(deadline: Deadline) -> str:
    return f"{deadline.due_at.isoformat()}|{deadline.deadline_id}"
