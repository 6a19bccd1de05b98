"""The [deadlines] table: defaults when absent, overrides when given, and a
broken one refused at start-up with the key named."""

import tomllib
from datetime import date, time, timedelta

import pytest

from gateway.config.area_config import ConfigError
from gateway.config.deadline_config import parse_deadlines
from gateway.core.deadlines import Counting, DeadlinePolicy, Duration, Span, Timer, default_policy

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
    assert policy == default_policy()
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
    assert calendar.holidays == {date(2026, 12, 25), date(2026, 12, 28)}
    assert calendar.week[0] == (Span(time(9), time(12, 30)), Span(time(13, 30), time(17)))
    assert calendar.week[4] == (Span(time(9), time(16, 30)),)
    assert calendar.week[1] == calendar.week[2] == calendar.week[3] == ()
    assert calendar.working_day == timedelta(hours=7, minutes=30)


def test_holidays_alone_keep_office_hours() -> None:
    calendar = parse('[deadlines.calendar]\nholidays = ["2026-12-25"]').calendar
    assert calendar.holidays == {date(2026, 12, 25)}
    assert calendar.week == default_policy().calendar.week


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
