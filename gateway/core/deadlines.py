"""When a receipt, a response or a decision falls due, and when its escalations fire.

Pure: instants, a policy and a calendar in; UTC instants out. No clock: the
caller passes the start it recorded.

Decisions written down here:
- working time is real elapsed time inside the calendar's spans, which are
  wall-clock hours in the calendar's zone. A span is resolved to instants on
  its own date, so a span that a DST change shortens (spring forward) or
  lengthens (fall back) holds one hour less or more. London changes at
  01:00-02:00, so office hours are 8 h every day of the year.
- a working deadline that uses up a span exactly is due at that span's end
  (17:00), not at the next opening: the earlier of two equal working instants.
- ``Nd`` working means N working days of working time, and one working day is
  the calendar's usual day: the total hours most weekdays work (ties: the
  longer). Mon-Fri 09:00-17:00 makes 1d = 8 working hours, so a referral at
  Mon 11:00 is due Tue 11:00, one at Fri 16:00 is due Mon 16:00, and one in
  the evening or at the weekend is due at the close of the next working day.
- ``Nd`` around the clock is N x 24 h of elapsed time, so a clock deadline is
  always start + duration, DST or not.
- a RAG change recomputes the response deadline from the original start,
  never from the time of the change: a request rated red later is due 4 h
  after it was sent, and may already be overdue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from gateway.core.errors import GatewayError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DEFAULT_ZONE = "Europe/London"


class DeadlineError(GatewayError):
    """A deadline asked for with a RAG rating the policy does not know."""


class Counting(StrEnum):
    WORKING = "working"
    CLOCK = "clock"


@dataclass(frozen=True)
class Span:
    """Working wall-clock hours within one day, start inclusive, end exclusive."""

    start: time
    end: time

    @property
    def nominal(self) -> timedelta:
        """The span's length on a day without a DST change."""
        return datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)


@dataclass(frozen=True)
class Calendar:
    """Weekday hours (index 0 = Monday) and holidays, in one zone.

    ``holidays`` are the dates closed all day: the area's bank holidays and its
    own closures, which the config layer computes (the core reads no calendar
    data), so a calendar built here without them knows no bank holiday.
    """

    zone: ZoneInfo
    week: tuple[tuple[Span, ...], ...]
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        # The config parser refuses these with the key named; this guards
        # the arithmetic, which would never end on a calendar with no hours.
        if len(self.week) != len(WEEKDAYS) or not any(self.week):
            raise ValueError("a calendar needs 7 weekdays and working hours on at least one")

    @property
    def working_day(self) -> timedelta:
        """The hours most working weekdays work (ties: the longer): what 1d working means."""
        lengths = Counter(sum((s.nominal for s in day), timedelta()) for day in self.week if day)
        return max(lengths.items(), key=lambda item: (item[1], item[0]))[0]

    def spans_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working spans as UTC instants; none on a holiday."""
        if day in self.holidays:
            return []
        return [
            (_instant(day, span.start, self.zone), _instant(day, span.end, self.zone))
            for span in self.week[day.weekday()]
        ]

    def is_working(self, at: datetime) -> bool:
        """Inside a span, or exactly at a span's end (where a deadline may fall)."""
        day = at.astimezone(self.zone).date()
        return any(start <= at <= end for start, end in self.spans_on(day))


def office_hours(zone: str = DEFAULT_ZONE, holidays: frozenset[date] = frozenset()) -> Calendar:
    """Mon-Fri 09:00-17:00: the default calendar."""
    day = (Span(time(9), time(17)),)
    return Calendar(ZoneInfo(zone), (day,) * 5 + ((), ()), holidays)


@dataclass(frozen=True)
class Duration:
    """A configured length. Days stay apart from minutes: a working day is not 24 h.

    Seconds exist for tests and the demo's shortened clock; areas configure
    minutes, hours and days.
    """

    minutes: int = 0
    days: int = 0
    seconds: int = 0

    def length(self, counting: Counting, calendar: Calendar) -> timedelta:
        per_day = calendar.working_day if counting is Counting.WORKING else timedelta(days=1)
        return self.days * per_day + timedelta(minutes=self.minutes, seconds=self.seconds)


@dataclass(frozen=True)
class Timer:
    duration: Duration
    counting: Counting


@dataclass(frozen=True)
class EscalationContact:
    """Who a level-2 Escalation names and goes to: staff of an agency, never a subject."""

    role: str
    agency: str
    email: str | None = None
    phone: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class DeadlinePolicy:
    """An area's deadlines: response by RAG, decision, delivery, and the level-2 grace.

    ``contacts`` empty means the hub's registered contacts (see escalation_contacts).
    """

    calendar: Calendar
    response: Mapping[str, Timer]
    decision: Timer
    delivery: Timer
    grace: Timer
    contacts: tuple[EscalationContact, ...] = ()


DEFAULT_RESPONSE = {
    # Red runs around the clock: harm may be imminent and police and the
    # emergency duty team work nights. Amber and green count working hours:
    # partners research in office hours, and a reminder to a closed office
    # at the weekend is noise that teaches people to ignore escalations.
    "Red": Timer(Duration(minutes=4 * 60), Counting.CLOCK),
    "Amber": Timer(Duration(minutes=24 * 60), Counting.WORKING),
    "Green": Timer(Duration(minutes=72 * 60), Counting.WORKING),
}
DEFAULT_DECISION = Timer(Duration(days=1), Counting.WORKING)
DEFAULT_DELIVERY = Timer(Duration(minutes=15), Counting.CLOCK)
# Around the clock, so a red breach at night reaches the hub manager an hour
# later rather than the next morning.
DEFAULT_GRACE = Timer(Duration(minutes=60), Counting.CLOCK)


def default_policy(calendar: Calendar | None = None) -> DeadlinePolicy:
    return DeadlinePolicy(
        calendar=calendar or office_hours(),
        response=dict(DEFAULT_RESPONSE),
        decision=DEFAULT_DECISION,
        delivery=DEFAULT_DELIVERY,
        grace=DEFAULT_GRACE,
    )


def due_at(start: datetime, duration: Duration, counting: Counting, calendar: Calendar) -> datetime:
    """The instant ``duration`` after ``start``, counted in working hours or around the clock."""
    if start.utcoffset() is None:
        raise ValueError("deadlines need an aware start time")
    length = duration.length(counting, calendar)
    if length <= timedelta():
        raise ValueError(f"a deadline needs a positive duration, not {length}")
    start = start.astimezone(UTC)
    if counting is Counting.CLOCK:
        return start + length
    return _add_working(start, length, calendar)


def _add_working(start: datetime, remaining: timedelta, calendar: Calendar) -> datetime:
    # Spans never cross midnight, so no span of an earlier local date is open at ``start``.
    day = start.astimezone(calendar.zone).date()
    while True:
        for span_start, span_end in calendar.spans_on(day):
            if span_end <= start:
                continue
            begin = max(span_start, start)
            available = span_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time on a date, in UTC. A time skipped by spring-forward
    resolves to the same offset as before the change (fold=0), so the span
    that contains the gap loses the skipped hour."""
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def response_timer(policy: DeadlinePolicy, rag: str) -> Timer:
    timer = policy.response.get(rag)
    if timer is None:
        raise DeadlineError(
            f"unknown RAG rating {rag!r} (known: {', '.join(sorted(policy.response))})"
        )
    return timer


def response_deadline(policy: DeadlinePolicy, rag: str, start: datetime) -> datetime:
    """When an InformationResponse is due for a request of this RAG sent at ``start``."""
    timer = response_timer(policy, rag)
    return due_at(start, timer.duration, timer.counting, policy.calendar)


def decision_deadline(policy: DeadlinePolicy, start: datetime) -> datetime:
    """When the hub's Decision is due for a Referral received at ``start``."""
    timer = policy.decision
    return due_at(start, timer.duration, timer.counting, policy.calendar)


def delivery_deadline(policy: DeadlinePolicy, start: datetime) -> datetime:
    """When a DeliveryReceipt is due for a message routed at ``start``."""
    timer = policy.delivery
    return due_at(start, timer.duration, timer.counting, policy.calendar)


def recompute_on_rag_change(
    policy: DeadlinePolicy, start: datetime, old_rag: str, new_rag: str
) -> datetime:
    """The response deadline after a RAG change, from the original start.

    Both ratings are checked, so a change recorded from a rating the policy
    never knew is refused rather than silently recomputed.
    """
    response_timer(policy, old_rag)
    return response_deadline(policy, new_rag, start)


def ladder(due: datetime, policy: DeadlinePolicy) -> list[tuple[int, datetime]]:
    """Level 1 (reminder and notice) at the deadline; level 2 (Escalation) after the grace."""
    grace = policy.grace
    return [(1, due), (2, due_at(due, grace.duration, grace.counting, policy.calendar))]
