"""Deadlines fall where a hub manager expects: working hours skip nights, weekends,
holidays and survive DST; clock hours are plain elapsed time."""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.deadlines import (
    Calendar,
    Counting,
    DeadlineError,
    Duration,
    Span,
    Timer,
    decision_deadline,
    default_policy,
    delivery_deadline,
    due_at,
    ladder,
    office_hours,
    recompute_on_rag_change,
    response_deadline,
)

pytestmark = pytest.mark.unit

LONDON = ZoneInfo("Europe/London")
CHRISTMAS = frozenset({date(2026, 12, 25), date(2026, 12, 28)})
OFFICE = office_hours(holidays=CHRISTMAS)
SPLIT_DAY = (Span(time(9), time(12, 30)), Span(time(13, 30), time(17)))
SPLIT = Calendar(LONDON, (SPLIT_DAY,) * 5 + ((), ()))
SEVEN = Calendar(LONDON, ((Span(time(8), time(20)),),) * 7)
SUNDAY_NIGHTS = Calendar(LONDON, ((),) * 6 + ((Span(time(0), time(6)),),))
WORKING, CLOCK = Counting.WORKING, Counting.CLOCK


def london(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=LONDON)


def hours(n: float) -> Duration:
    return Duration(minutes=round(n * 60))


def test_working_hours_within_one_day() -> None:
    assert due_at(london(11, 23, 10), hours(4), WORKING, OFFICE) == london(11, 23, 14)


def test_result_is_utc() -> None:
    assert due_at(london(7, 6, 10), hours(4), WORKING, OFFICE).tzinfo is UTC


def test_a_deadline_crossing_a_weekend_resumes_on_monday() -> None:
    # Fri 27 Nov 15:00: 2 h on Friday, 2 h on Monday.
    assert due_at(london(11, 27, 15), hours(4), WORKING, OFFICE) == london(11, 30, 11)


def test_bank_holidays_are_skipped() -> None:
    # Thu 24 Dec 16:00: 1 h, then Fri 25 (holiday), the weekend, Mon 28 (holiday).
    assert due_at(london(12, 24, 16), hours(4), WORKING, OFFICE) == london(12, 29, 12)
    assert due_at(london(12, 24, 16), hours(4), WORKING, office_hours()) == london(12, 25, 12)


def test_a_start_in_the_evening_counts_from_the_next_opening() -> None:
    assert due_at(london(11, 23, 19), hours(4), WORKING, OFFICE) == london(11, 24, 13)


def test_a_start_at_the_weekend_counts_from_monday() -> None:
    assert due_at(london(11, 28, 11), hours(4), WORKING, OFFICE) == london(11, 30, 13)


def test_a_start_before_opening_counts_from_the_opening() -> None:
    assert due_at(london(11, 23, 8, 59), hours(1), WORKING, OFFICE) == london(11, 23, 10)


def test_a_deadline_using_up_the_day_is_due_at_the_close_not_the_next_opening() -> None:
    assert due_at(london(11, 23, 9), hours(8), WORKING, OFFICE) == london(11, 23, 17)
    assert due_at(london(11, 23, 16), hours(1), WORKING, OFFICE) == london(11, 23, 17)


def test_a_start_exactly_at_the_close_counts_from_the_next_opening() -> None:
    assert due_at(london(11, 23, 17), Duration(minutes=1), WORKING, OFFICE) == london(11, 24, 9, 1)


def test_several_spans_a_day_skip_the_gap() -> None:
    # 12:00 -> 12:30 is 30 min, lunch is skipped, 13:30 -> 14:00 is the rest.
    assert due_at(london(11, 23, 12), hours(1), WORKING, SPLIT) == london(11, 23, 14)
    assert due_at(london(11, 23, 13), hours(1), WORKING, SPLIT) == london(11, 23, 14, 30)
    assert due_at(london(11, 23, 9), hours(3.5), WORKING, SPLIT) == london(11, 23, 12, 30)


def test_spring_forward_a_working_hour_is_still_an_hour() -> None:
    # Sat 28 Mar 19:00 GMT: 1 h on Saturday, then 3 h from Sun 08:00 BST.
    due = due_at(london(3, 28, 19), hours(4), WORKING, SEVEN)
    assert due == london(3, 29, 11)
    assert due == datetime(2026, 3, 29, 10, tzinfo=UTC)
    # Over a weekend too: Fri 27 Mar 16:00 GMT is due Mon 30 Mar 12:00 BST.
    assert due_at(london(3, 27, 16), hours(4), WORKING, OFFICE) == london(3, 30, 12)


def test_fall_back_a_working_hour_is_still_an_hour() -> None:
    due = due_at(london(10, 24, 19), hours(4), WORKING, SEVEN)
    assert due == london(10, 25, 11)
    assert due == datetime(2026, 10, 25, 11, tzinfo=UTC)


def test_a_span_across_the_change_holds_the_hours_that_really_pass() -> None:
    # Sunday 00:00-06:00 is 5 real hours on 29 Mar and 7 on 25 Oct.
    assert due_at(london(3, 29, 0), hours(5), WORKING, SUNDAY_NIGHTS) == london(3, 29, 6)
    assert due_at(london(3, 29, 0), hours(6), WORKING, SUNDAY_NIGHTS) == london(4, 5, 1)
    assert due_at(london(10, 25, 0), hours(7), WORKING, SUNDAY_NIGHTS) == london(10, 25, 6)


def test_clock_counting_ignores_the_calendar() -> None:
    start = london(12, 25, 23)  # a holiday, at night
    assert due_at(start, hours(4), CLOCK, OFFICE) == start + timedelta(hours=4)
    # Across spring-forward: 24 elapsed hours, 25 on the wall clock.
    assert due_at(london(3, 28, 12), Duration(days=1), CLOCK, OFFICE) == london(3, 29, 13)


def test_a_naive_start_or_an_empty_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        due_at(datetime(2026, 11, 23, 10), hours(1), CLOCK, OFFICE)
    with pytest.raises(ValueError, match="positive"):
        due_at(london(11, 23, 10), Duration(), WORKING, OFFICE)


def test_a_calendar_without_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="working hours"):
        Calendar(LONDON, ((),) * 7)


def test_a_working_day_is_the_hours_most_weekdays_work() -> None:
    assert OFFICE.working_day == timedelta(hours=8)
    assert SPLIT.working_day == timedelta(hours=7)
    short_friday = Calendar(
        LONDON, ((Span(time(9), time(17)),),) * 4 + ((Span(time(9), time(16, 30)),), (), ())
    )
    assert short_friday.working_day == timedelta(hours=8)
    tie = Calendar(LONDON, ((Span(time(9), time(17)),), (Span(time(9), time(16)),)) + ((),) * 5)
    assert tie.working_day == timedelta(hours=8)


def test_decision_is_due_one_working_day_later() -> None:
    policy = default_policy(OFFICE)
    assert decision_deadline(policy, london(11, 23, 11)) == london(11, 24, 11)
    assert decision_deadline(policy, london(11, 27, 16)) == london(11, 30, 16)
    assert decision_deadline(policy, london(11, 23, 19)) == london(11, 24, 17)
    assert decision_deadline(policy, london(11, 28, 11)) == london(11, 30, 17)
    assert decision_deadline(policy, london(12, 24, 11)) == london(12, 29, 11)


def test_delivery_is_due_fifteen_minutes_later_day_or_night() -> None:
    policy = default_policy(OFFICE)
    assert delivery_deadline(policy, london(11, 28, 23, 55)) == london(11, 29, 0, 10)


def test_default_response_deadlines_by_rag() -> None:
    policy = default_policy(OFFICE)
    friday_evening = london(11, 27, 18)
    assert response_deadline(policy, "Red", friday_evening) == london(11, 27, 22)
    # 24 working hours = 3 working days; 72 = 9.
    assert response_deadline(policy, "Amber", friday_evening) == london(12, 2, 17)
    assert response_deadline(policy, "Green", london(11, 23, 10)) == london(12, 4, 10)


def test_an_unknown_rag_is_refused_by_name() -> None:
    with pytest.raises(DeadlineError, match="'Purple'"):
        response_deadline(default_policy(OFFICE), "Purple", london(11, 23, 10))


def test_a_rag_upgrade_recomputes_earlier_from_the_original_start() -> None:
    policy = default_policy(OFFICE)
    start = london(11, 23, 10)
    assert response_deadline(policy, "Amber", start) == london(11, 26, 10)
    assert recompute_on_rag_change(policy, start, "Amber", "Red") == london(11, 23, 14)
    assert recompute_on_rag_change(policy, start, "Red", "Green") == london(12, 4, 10)


def test_a_rag_change_from_an_unknown_rating_is_refused() -> None:
    with pytest.raises(DeadlineError, match="'Pink'"):
        recompute_on_rag_change(default_policy(OFFICE), london(11, 23, 10), "Pink", "Red")


def test_ladder_level_two_follows_after_the_grace() -> None:
    policy = default_policy(OFFICE)
    due = london(11, 27, 17)
    assert ladder(due, policy) == [(1, due), (2, london(11, 27, 18))]
    policy = replace(policy, grace=Timer(Duration(minutes=60), WORKING))
    assert ladder(due, policy) == [(1, due), (2, london(11, 30, 10))]


# Properties ---------------------------------------------------------------

CALENDARS = st.sampled_from([OFFICE, SPLIT, SEVEN, SUNDAY_NIGHTS])
STARTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
MINUTES = st.integers(min_value=1, max_value=80 * 60)


def working_time_between(start: datetime, end: datetime, calendar: Calendar) -> timedelta:
    """An independent oracle: the overlap of [start, end] with every span."""
    total = timedelta()
    day = start.astimezone(LONDON).date()
    while day <= end.astimezone(LONDON).date():
        for span_start, span_end in calendar.spans_on(day):
            overlap = min(span_end, end) - max(span_start, start)
            total += max(overlap, timedelta())
        day += timedelta(days=1)
    return total


@settings(max_examples=300, deadline=None)
@given(STARTS, MINUTES, MINUTES, CALENDARS)
def test_working_due_is_monotonic_in_duration(
    start: datetime, a: int, b: int, calendar: Calendar
) -> None:
    short, long = sorted((a, b))
    early = due_at(start, Duration(minutes=short), WORKING, calendar)
    late = due_at(start, Duration(minutes=long), WORKING, calendar)
    assert early < late if short < long else early == late


@settings(max_examples=300, deadline=None)
@given(STARTS, STARTS, MINUTES, CALENDARS)
def test_working_due_is_monotonic_in_start(
    a: datetime, b: datetime, minutes: int, calendar: Calendar
) -> None:
    first, second = sorted((a, b))
    duration = Duration(minutes=minutes)
    assert due_at(first, duration, WORKING, calendar) <= due_at(second, duration, WORKING, calendar)


@settings(max_examples=300, deadline=None)
@given(STARTS, MINUTES, st.integers(min_value=0, max_value=5), CALENDARS)
def test_clock_due_is_start_plus_duration(
    start: datetime, minutes: int, days: int, calendar: Calendar
) -> None:
    duration = Duration(minutes=minutes, days=days)
    assert due_at(start, duration, CLOCK, calendar) == start + timedelta(days=days, minutes=minutes)


@settings(max_examples=300, deadline=None)
@given(STARTS, MINUTES, CALENDARS)
def test_working_due_is_in_working_hours_after_exactly_that_much_work(
    start: datetime, minutes: int, calendar: Calendar
) -> None:
    due = due_at(start, Duration(minutes=minutes), WORKING, calendar)
    assert due > start
    assert calendar.is_working(due)
    assert working_time_between(start, due, calendar) == timedelta(minutes=minutes)


@settings(max_examples=100, deadline=None)
@given(STARTS, st.integers(min_value=1, max_value=5), CALENDARS)
def test_working_days_are_working_day_hours(start: datetime, days: int, calendar: Calendar) -> None:
    by_days = due_at(start, Duration(days=days), WORKING, calendar)
    by_minutes = Duration(minutes=days * int(calendar.working_day.total_seconds()) // 60)
    assert by_days == due_at(start, by_minutes, WORKING, calendar)
