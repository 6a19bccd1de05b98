"""The [deadlines] table: defaults when absent, overrides when given, and a
broken one refused at start-up with the key named."""

import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config.area_config import ConfigError, parse_config
from gateway.config.deadline_config import parse_deadlines
from gateway.core.deadlines import (
    Counting,
    DeadlinePolicy,
    Duration,
    Span,
    Timer,
    decision_deadline,
    default_policy,
)
from gateway.demo.area import demo_config

pytestmark = pytest.mark.unit


def fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"gateway.toml: {key}: {problem}")


def parse(text: str) -> DeadlinePolicy:
    return parse_deadlines(tomllib.loads(text).get("deadlines"), fail)


def refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert str(caught.value).startswith(f"gateway.toml: {message}"), str(caught.value)


def test_absent_table_gives_the_defaults() -> None:
    policy = parse("")
    assert policy.calendar.holidays >= {date(2026, 12, 25), date(2027, 1, 1)}
    assert policy == default_policy(policy.calendar)
    assert policy.response["Red"] == Timer(Duration(minutes=240), Counting.CLOCK)
    assert policy.response["Amber"] == Timer(Duration(minutes=24 * 60), Counting.WORKING)
    assert policy.response["Green"] == Timer(Duration(minutes=72 * 60), Counting.WORKING)
    assert policy.decision == Timer(Duration(days=1), Counting.WORKING)
    assert policy.delivery == Timer(Duration(minutes=15), Counting.CLOCK)
    assert policy.grace == Timer(Duration(minutes=60), Counting.CLOCK)
    assert policy.calendar.zone.key == "Europe/London"
    assert policy.calendar.week[0] == (Span(time(9), time(17)),)
    assert policy.calendar.week[5:] == ((), ())


def test_a_full_table_overrides_each_part() -> None:
    policy = parse(
        """
        [deadlines]
        delivery = { duration = "5m" }
        decision = { duration = "2d", counting = "clock" }
        grace = { duration = "90m", counting = "working" }
        rag.Red = { duration = "2h" }
        rag.Amber = { duration = "6h", counting = "clock" }

        [deadlines.calendar]
        zone = "Europe/Dublin"
        holidays = [2026-12-25, "2026-12-28"]
        hours = { Mon = ["13:30-17:00", "09:00-12:30"], friday = ["09:00-16:30"] }
        """
    )
    assert policy.delivery == Timer(Duration(minutes=5), Counting.CLOCK)
    assert policy.decision == Timer(Duration(days=2), Counting.CLOCK)
    assert policy.grace == Timer(Duration(minutes=90), Counting.WORKING)
    assert policy.response["Red"] == Timer(Duration(minutes=120), Counting.CLOCK)
    assert policy.response["Amber"] == Timer(Duration(minutes=360), Counting.CLOCK)
    assert policy.response["Green"] == default_policy().response["Green"]
    calendar = policy.calendar
    assert calendar.zone.key == "Europe/Dublin"
    assert {date(2026, 12, 25), date(2026, 12, 28)} <= calendar.holidays
    assert calendar.week[0] == (Span(time(9), time(12, 30)), Span(time(13, 30), time(17)))
    assert calendar.week[4] == (Span(time(9), time(16, 30)),)
    assert calendar.week[1] == calendar.week[2] == calendar.week[3] == ()
    assert calendar.working_day == timedelta(hours=7, minutes=30)


def test_holidays_alone_keep_office_hours() -> None:
    calendar = parse('[deadlines.calendar]\nholidays = ["2026-12-24"]').calendar
    assert date(2026, 12, 24) in calendar.holidays
    assert calendar.week == default_policy().calendar.week


LONDON = ZoneInfo("Europe/London")


def holidays_of(nation: str) -> frozenset[date]:
    return parse(f'[deadlines.calendar]\nnation = "{nation}"').calendar.holidays


# (nation, a day that nation closes, a day the others keep open); 2026 unless stated.
DISTINGUISHING = [
    ("scotland", date(2026, 1, 2), ("england-and-wales", "northern-ireland")),
    ("scotland", date(2026, 11, 30), ("england-and-wales", "northern-ireland")),  # St Andrew's
    ("scotland", date(2026, 8, 3), ("england-and-wales", "northern-ireland")),  # 1st Mon in Aug
    ("northern-ireland", date(2026, 3, 17), ("england-and-wales", "scotland")),  # St Patrick's
    ("northern-ireland", date(2026, 7, 13), ("england-and-wales", "scotland")),  # 12 July (Sun)
    ("england-and-wales", date(2026, 4, 6), ("scotland",)),  # Easter Monday
    ("england-and-wales", date(2026, 8, 31), ("scotland",)),  # last Mon in August
]


@pytest.mark.parametrize(("nation", "day", "open_in"), DISTINGUISHING)
def test_each_nation_has_its_own_bank_holidays(
    nation: str, day: date, open_in: tuple[str, ...]
) -> None:
    assert day in holidays_of(nation)
    for other in open_in:
        assert day not in holidays_of(other), other


@pytest.mark.parametrize("nation", ["england-and-wales", "scotland", "northern-ireland"])
def test_every_nation_closes_for_christmas_with_substitute_days(nation: str) -> None:
    closed = holidays_of(nation)
    assert {date(2026, 12, 25), date(2026, 12, 26), date(2027, 1, 1)} <= closed
    # 26 Dec 2026 is a Saturday: Boxing Day moves to Monday 28th.
    assert date(2026, 12, 28) in closed
    # 25 and 26 Dec 2027 are a weekend: both move, to Monday 27th and Tuesday 28th.
    assert {date(2027, 12, 27), date(2027, 12, 28)} <= closed
    assert date(2026, 12, 24) not in closed and date(2026, 12, 29) not in closed


def test_the_area_adds_its_own_closures_on_top_and_none_means_only_those() -> None:
    closed = parse(
        '[deadlines.calendar]\nnation = "scotland"\nholidays = [2026-12-24]'
    ).calendar.holidays
    assert {date(2026, 12, 24), date(2026, 11, 30), date(2026, 12, 25)} <= closed
    only = parse('[deadlines.calendar]\nnation = "none"\nholidays = [2026-12-24]')
    assert only.calendar.holidays == {date(2026, 12, 24)}


def test_a_referral_routed_on_christmas_eve_is_not_due_on_christmas_day() -> None:
    """Issue 14, finding 12: the demo area's decision deadline skips Christmas."""
    demo = demo_config("amqp://guest:guest@127.0.0.1:5672/x", date(2026, 11, 23))
    policy = parse_config(demo, Path("/areas/demo/gateway.toml")).deadlines
    routed = datetime(2026, 12, 24, 10, tzinfo=LONDON)  # a Thursday
    # Fri 25 Christmas, the weekend, Mon 28 the Boxing Day substitute: Tue 29 Dec.
    assert decision_deadline(policy, routed) == datetime(2026, 12, 29, 10, tzinfo=LONDON)
    assert decision_deadline(parse(""), routed) == datetime(2026, 12, 29, 10, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[deadlines.rag]\nPurple = { duration = "1h" }',
            "deadlines.rag.Purple: unknown RAG rating",
        ),
        ('[deadlines.rag]\nred = { duration = "1h" }', "deadlines.rag.red: unknown RAG rating"),
        (
            '[deadlines.rag]\nRed = { duration = "-4h" }',
            "deadlines.rag.Red.duration: '-4h' must be",
        ),
        ('[deadlines.rag]\nRed = { duration = "0m" }', "deadlines.rag.Red.duration: '0m' must be"),
        (
            '[deadlines.rag]\nRed = { duration = "4 hours" }',
            "deadlines.rag.Red.duration: '4 hours'",
        ),
        ("[deadlines.rag]\nRed = { duration = 4 }", "deadlines.rag.Red.duration: 4 is not"),
        ('[deadlines.rag]\nRed = { counting = "office" }', "deadlines.rag.Red.counting: 'office'"),
        ('[deadlines.rag]\nRed = { duraton = "1h" }', "deadlines.rag.Red.duraton: unknown key"),
        ('[deadlines.rag]\nRed = "4h"', "deadlines.rag.Red: must be a table"),
        ('[deadlines]\ndelivery = { duration = "-15m" }', "deadlines.delivery.duration:"),
        ('[deadlines]\ndecision = { duration = "1w" }', "deadlines.decision.duration: '1w'"),
        ('[deadlines]\ngrace = { duration = "0h" }', "deadlines.grace.duration:"),
        ('[deadlines]\ngrase = { duration = "1h" }', "deadlines.grase: unknown key"),
        ('deadlines = "soon"', "deadlines: must be a table"),
        ('[deadlines.calendar]\nzone = "Europe/Atlantis"', "deadlines.calendar.zone: 'Europe/At"),
        ('[deadlines.calendar]\nzone = "../etc/passwd"', "deadlines.calendar.zone:"),
        (
            '[deadlines.calendar]\nholidays = ["2026-12-25", "2026-13-01"]',
            "deadlines.calendar.holidays[1]: '2026-13-01' is not a date",
        ),
        (
            "[deadlines.calendar]\nholidays = [2026-12-25T00:00:00Z]",
            "deadlines.calendar.holidays[0]:",
        ),
        ('[deadlines.calendar]\nholidays = "2026-12-25"', "deadlines.calendar.holidays: must be"),
        (
            '[deadlines.calendar.hours]\nMon = ["09:00-13:00", "12:00-17:00"]',
            "deadlines.calendar.hours.Mon: spans 09:00-13:00 and 12:00-17:00 overlap",
        ),
        (
            '[deadlines.calendar.hours]\nTue = ["17:00-09:00"]',
            "deadlines.calendar.hours.Tue[0]: '17:00-09:00' ends before it starts",
        ),
        (
            '[deadlines.calendar.hours]\nTue = ["09:00-09:00"]',
            "deadlines.calendar.hours.Tue[0]: '09:00-09:00' ends before it starts",
        ),
        (
            '[deadlines.calendar.hours]\nWed = ["09:00-25:00"]',
            "deadlines.calendar.hours.Wed[0]: '09:00-25:00' is not a time of day",
        ),
        (
            '[deadlines.calendar.hours]\nWed = ["9am-5pm"]',
            "deadlines.calendar.hours.Wed[0]: '9am-5pm' is not a span",
        ),
        (
            '[deadlines.calendar.hours]\nFunday = ["09:00-17:00"]',
            "deadlines.calendar.hours.Funday:",
        ),
        (
            '[deadlines.calendar.hours]\nMon = ["09:00-17:00"]\nmonday = ["09:00-17:00"]',
            "deadlines.calendar.hours.monday: Mon is given twice",
        ),
        ("[deadlines.calendar.hours]\nMon = []", "deadlines.calendar.hours: no working hours"),
        ("[deadlines.calendar]\nhours = {}", "deadlines.calendar.hours: no working hours"),
        (
            '[deadlines.calendar.hours]\nMon = "09:00-17:00"',
            "deadlines.calendar.hours.Mon: must be",
        ),
        ("[deadlines.calendar]\nopen = true", "deadlines.calendar.open: unknown key"),
        (
            '[deadlines.calendar]\nnation = "wales"',
            "deadlines.calendar.nation: 'wales' must be one of 'england-and-wales', 'scotland'",
        ),
        ("[deadlines.calendar]\nnation = 3", "deadlines.calendar.nation: 3 must be one of"),
        ('[deadlines]\ncontacts = "hub"', "deadlines.contacts: must be an array of tables"),
        (
            '[[deadlines.contacts]]\nagency = "hub"\nemail = "m@hub.example"',
            "deadlines.contacts[0].role: missing",
        ),
        (
            '[[deadlines.contacts]]\nrole = "Manager"\nagency = "hub"',
            "deadlines.contacts[0]: needs an email or a phone",
        ),
        (
            '[[deadlines.contacts]]\nrole = "Manager"\nagency = "hub"\nphone = ""',
            "deadlines.contacts[0].phone: must be a non-empty string",
        ),
        (
            '[[deadlines.contacts]]\nrole = "M"\nagency = "hub"\nemail = "m@h"\npager = "1"',
            "deadlines.contacts[0].pager: unknown key",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_key(text: str, message: str) -> None:
    refused(text, message)


def test_contacts_and_seconds_for_a_shortened_clock() -> None:
    policy = parse(
        """
        [deadlines]
        delivery = { duration = "30s", counting = "clock" }

        [[deadlines.contacts]]
        role = "MASH team manager"
        agency = "hub"
        email = "managers@hub.example"

        [[deadlines.contacts]]
        role = "Out-of-hours duty manager"
        agency = "csc"
        phone = "01632 960000"
        name = "Duty manager"
        """
    )
    assert policy.delivery == Timer(Duration(seconds=30), Counting.CLOCK)
    assert [(c.agency, c.email, c.phone) for c in policy.contacts] == [
        ("hub", "managers@hub.example", None),
        ("csc", None, "01632 960000"),
    ]
