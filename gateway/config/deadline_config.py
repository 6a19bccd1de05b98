"""The ``[deadlines]`` table of gateway.toml, parsed into a DeadlinePolicy.

Pure: the TOML value in, a policy out, or the error that ``fail`` builds
naming the key path. ``fail`` is the config parser's, so errors read like
every other config error without this module importing gateway.config.area_config.

Layout (every table and key optional; what is absent keeps its default)::

    [deadlines]
    delivery = { duration = "15m", counting = "clock" }
    decision = { duration = "1d", counting = "working" }
    grace = { duration = "1h", counting = "clock" }     # level 1 -> level 2
    rag.Red = { duration = "4h", counting = "clock" }
    rag.Amber = { duration = "24h" }                     # keeps its default counting

    [[deadlines.contacts]]                              # level-2 Escalations go here
    role = "MASH team manager"                          # (default: the hub's contacts)
    agency = "hub"
    email = "mash.managers@hub.example"                 # and/or phone; name is optional

    [deadlines.calendar]
    zone = "Europe/London"
    nation = "england-and-wales"      # or "scotland", "northern-ireland": its bank holidays
    holidays = [2026-12-24, "2026-12-31"]   # the area's own closures, on top
    hours = { Mon = ["09:00-12:30", "13:30-17:00"], Tue = ["09:00-17:00"] }

Decisions: a ``hours`` table replaces the default week whole (a day it does
not name is closed), because merging days would make a calendar nobody
wrote. Unknown keys are refused, so a misspelt key cannot silently leave a
default in force.

Bank holidays come from the ``holidays`` package (substitute days and
one-off days such as a state funeral included), for the nation the area is
in: they differ (2 January and St Andrew's Day in Scotland, St Patrick's Day
and 12 July in Northern Ireland, Easter Monday everywhere but Scotland). An
area that names no nation gets England and Wales's, the most common, so a
calendar is never without Christmas; ``nation = "none"`` leaves only the
area's own ``holidays``. They are computed here, for HOLIDAY_YEARS, and handed
to the pure core as a set of dates.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as bank_holiday_rules

from gateway.config.config_checks import Fail, known, table
from gateway.core import deadlines as dl

DURATION = re.compile(r"(-?[0-9]+)([smhd])")
SPAN = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_MINUTES = {"m": 1, "h": 60}
_FULL_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_NAMES = {
    name.lower(): index
    for index, names in enumerate(zip(dl.WEEKDAYS, _FULL_NAMES, strict=True))
    for name in names
}
# The UK's three bank-holiday jurisdictions, as the holidays package's GB subdivisions
# (Wales keeps England's bank holidays).
NATIONS = {"england-and-wales": "ENG", "scotland": "SCT", "northern-ireland": "NIR"}
DEFAULT_NATION = "england-and-wales"
NO_NATION = "none"
# Deadlines run days or weeks ahead of now; the span covers any a running area computes.
HOLIDAY_YEARS = range(2000, 2100)


@cache
def bank_holidays(nation: str) -> frozenset[date]:
    """The nation's bank holidays in HOLIDAY_YEARS, substitute days included."""
    if nation == NO_NATION:
        return frozenset()
    rules = bank_holiday_rules.country_holidays("GB", subdiv=NATIONS[nation], years=HOLIDAY_YEARS)
    return frozenset(rules)


def parse_deadlines(value: Any, fail: Fail) -> dl.DeadlinePolicy:
    """The area's policy from the ``[deadlines]`` value; the defaults when it is absent."""
    if value is None:
        return dl.default_policy(dl.office_hours(holidays=bank_holidays(DEFAULT_NATION)))
    doc = table(value, "deadlines", fail)
    known(doc, "deadlines", {"delivery", "decision", "grace", "rag", "calendar", "contacts"}, fail)
    calendar = _calendar(doc.get("calendar"), fail)
    return dl.DeadlinePolicy(
        calendar=calendar,
        response=_rag(doc.get("rag"), fail),
        decision=_timer(doc.get("decision"), "deadlines.decision", dl.DEFAULT_DECISION, fail),
        delivery=_timer(doc.get("delivery"), "deadlines.delivery", dl.DEFAULT_DELIVERY, fail),
        grace=_timer(doc.get("grace"), "deadlines.grace", dl.DEFAULT_GRACE, fail),
        contacts=_contacts(doc.get("contacts", []), fail),
    )


def parse_duration(text: Any, key: str, fail: Fail) -> dl.Duration:
    """A positive whole number of seconds, minutes, hours or days: "90m", "4h", "1d".

    Seconds ("30s") are for test areas and demos on a shortened clock.
    """
    match = DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise fail(key, f"{text!r} is not a duration like '4h', '90m' or '1d'")
    amount, unit = int(match[1]), match[2]
    if amount <= 0:
        raise fail(key, f"{text!r} must be longer than zero")
    if unit == "d":
        return dl.Duration(days=amount)
    if unit == "s":
        return dl.Duration(seconds=amount)
    return dl.Duration(minutes=amount * _MINUTES[unit])


def _timer(value: Any, key: str, default: dl.Timer, fail: Fail) -> dl.Timer:
    if value is None:
        return default
    doc = table(value, key, fail)
    known(doc, key, {"duration", "counting"}, fail)
    duration = default.duration
    if "duration" in doc:
        duration = parse_duration(doc["duration"], f"{key}.duration", fail)
    counting = doc.get("counting", default.counting.value)
    if counting not in {c.value for c in dl.Counting}:
        raise fail(f"{key}.counting", f"{counting!r} must be 'working' or 'clock'")
    return dl.Timer(duration, dl.Counting(counting))


def _contacts(value: Any, fail: Fail) -> tuple[dl.EscalationContact, ...]:
    if not isinstance(value, list):
        raise fail("deadlines.contacts", "must be an array of tables ([[deadlines.contacts]])")
    return tuple(_contact(item, f"deadlines.contacts[{i}]", fail) for i, item in enumerate(value))


def _contact(value: Any, key: str, fail: Fail) -> dl.EscalationContact:
    doc = table(value, key, fail)
    known(doc, key, {"role", "agency", "email", "phone", "name"}, fail)
    found: dict[str, str | None] = {}
    for name in ("role", "agency", "email", "phone", "name"):
        text = doc.get(name)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise fail(f"{key}.{name}", "must be a non-empty string")
        found[name] = text
    for name in ("role", "agency"):
        if found[name] is None:
            raise fail(f"{key}.{name}", "missing")
    if found["email"] is None and found["phone"] is None:
        raise fail(key, "needs an email or a phone")
    return dl.EscalationContact(
        role=str(found["role"]),
        agency=str(found["agency"]),
        email=found["email"],
        phone=found["phone"],
        name=found["name"],
    )


def _rag(value: Any, fail: Fail) -> dict[str, dl.Timer]:
    timers = dict(dl.DEFAULT_RESPONSE)
    if value is None:
        return timers
    for rag, timer in table(value, "deadlines.rag", fail).items():
        key = f"deadlines.rag.{rag}"
        if rag not in timers:
            raise fail(key, f"unknown RAG rating (allowed: {', '.join(sorted(timers))})")
        timers[rag] = _timer(timer, key, timers[rag], fail)
    return timers


def _calendar(value: Any, fail: Fail) -> dl.Calendar:
    if value is None:
        return dl.office_hours(holidays=bank_holidays(DEFAULT_NATION))
    doc = table(value, "deadlines.calendar", fail)
    known(doc, "deadlines.calendar", {"zone", "nation", "holidays", "hours"}, fail)
    zone = _zone(doc.get("zone", dl.DEFAULT_ZONE), fail)
    nation = _nation(doc.get("nation", DEFAULT_NATION), fail)
    holidays = bank_holidays(nation) | _holidays(doc.get("holidays", []), fail)
    if "hours" not in doc:
        return dl.office_hours(zone.key, holidays)
    return dl.Calendar(zone, _week(doc["hours"], fail), holidays)


def _zone(name: Any, fail: Fail) -> ZoneInfo:
    key = "deadlines.calendar.zone"
    if not isinstance(name, str):
        raise fail(key, "must be an IANA zone name, e.g. 'Europe/London'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(key, f"{name!r} is not a known IANA zone") from None


def _nation(name: Any, fail: Fail) -> str:
    if not isinstance(name, str) or (name != NO_NATION and name not in NATIONS):
        allowed = ", ".join(repr(n) for n in (*NATIONS, NO_NATION))
        raise fail("deadlines.calendar.nation", f"{name!r} must be one of {allowed}")
    return str(name)


def _holidays(value: Any, fail: Fail) -> frozenset[date]:
    key = "deadlines.calendar.holidays"
    if not isinstance(value, list):
        raise fail(key, "must be an array of dates")
    return frozenset(_day(item, f"{key}[{index}]", fail) for index, item in enumerate(value))


def _day(item: Any, key: str, fail: Fail) -> date:
    if isinstance(item, date) and not isinstance(item, datetime):
        return item
    if isinstance(item, str):
        try:
            return date.fromisoformat(item)
        except ValueError:
            pass
    raise fail(key, f"{item!r} is not a date, e.g. 2026-12-25")


def _week(value: Any, fail: Fail) -> tuple[tuple[dl.Span, ...], ...]:
    key = "deadlines.calendar.hours"
    week: list[tuple[dl.Span, ...] | None] = [None] * len(dl.WEEKDAYS)
    for name, spans in table(value, key, fail).items():
        index = _DAY_NAMES.get(name.lower())
        if index is None:
            raise fail(f"{key}.{name}", f"unknown weekday (use {', '.join(dl.WEEKDAYS)})")
        if week[index] is not None:
            raise fail(f"{key}.{name}", f"{dl.WEEKDAYS[index]} is given twice")
        week[index] = _spans(spans, f"{key}.{name}", fail)
    if not any(week):
        raise fail(key, "no working hours on any day")
    return tuple(day or () for day in week)


def _spans(value: Any, key: str, fail: Fail) -> tuple[dl.Span, ...]:
    if not isinstance(value, list):
        raise fail(key, 'must be an array of spans like "09:00-17:00"')
    spans = sorted(
        (_span(item, f"{key}[{index}]", fail) for index, item in enumerate(value)),
        key=lambda span: span.start,
    )
    for earlier, later in pairwise(spans):
        if later.start < earlier.end:
            raise fail(key, f"spans {_show(earlier)} and {_show(later)} overlap")
    return tuple(spans)


def _span(item: Any, key: str, fail: Fail) -> dl.Span:
    match = SPAN.fullmatch(item) if isinstance(item, str) else None
    if match is None:
        raise fail(key, f'{item!r} is not a span like "09:00-17:00"')
    try:
        start = time(int(match[1]), int(match[2]))
        end = time(int(match[3]), int(match[4]))
    except ValueError:
        raise fail(key, f"{item!r} is not a time of day (00:00 to 23:59)") from None
    if end <= start:
        raise fail(key, f"{item!r} ends before it starts")
    return dl.Span(start, end)


def _show(span: dl.Span) -> str:
    return f"{span.start:%H:%M}-{span.end:%H:%M}"
