"""The partnership board's performance figures, from the tracking store: counts and durations only.

Pure: records in, figures out. What a MASH performance framework asks for:
- volumes by message type and agency (sent and received);
- each agency's timeliness against its deadlines: how many met on time,
  late, or still open past due, and the median and 90th-percentile time
  taken, by deadline kind and RAG; breaches by RAG;
- delivery failures by failed check and sending agency;
- repeat referrals: referrals about a subject already referred within N
  days, and how many subjects that is, counted from the hub's own copies
  (the router never reads payloads). Subjects are matched on their strong
  identifiers (NHS number, UPN, PNC id, a local id with its system), never
  on names; a subject with none is not matched.
No names, ids of people or narrative ever reach a figure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median, quantiles

from lxml import etree

from gateway.core.deadline_rules import Deadline
from gateway.core.records import MessageRecord, TimelineEntry
from gateway.core.schemas import NAMESPACE

NEGATIVE_RECEIPT = "negative receipt from "


@dataclass(frozen=True)
class Volume:
    message_type: str
    agency: str
    sent: int
    received: int


@dataclass(frozen=True)
class Timeliness:
    """What one agency owed of one kind and RAG in the period, and how it went."""

    agency: str
    kind: str
    rag: str | None
    owed: int
    on_time: int
    late: int
    overdue: int  # still open and past due
    median_hours: float | None  # of those answered
    p90_hours: float | None


@dataclass(frozen=True)
class Failure:
    check: str
    sender: str
    count: int


@dataclass(frozen=True)
class Repeats:
    days: int
    referrals: int  # referrals with at least one identified subject
    repeat_referrals: int  # of those, about a subject referred in the previous ``days``
    subjects_referred_again: int


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    volumes: tuple[Volume, ...]
    timeliness: tuple[Timeliness, ...]
    breaches_by_rag: dict[str, int]
    failures: tuple[Failure, ...]
    repeats: Repeats | None = None


def build(
    start: datetime,
    end: datetime,
    now: datetime,
    messages: Sequence[MessageRecord],
    deadlines: Sequence[Deadline],
    rejections: Sequence[TimelineEntry],
    repeats: Repeats | None = None,
) -> Report:
    return Report(
        start=start,
        end=end,
        volumes=volumes(messages),
        timeliness=timeliness(deadlines, now),
        breaches_by_rag=breaches_by_rag(deadlines, now),
        failures=failures(rejections, messages),
        repeats=repeats,
    )


def volumes(messages: Iterable[MessageRecord]) -> tuple[Volume, ...]:
    """Sent and received by type and agency; receipts are left out, as they mirror deliveries."""
    sent: Counter[tuple[str, str]] = Counter()
    received: Counter[tuple[str, str]] = Counter()
    for message in messages:
        if message.message_type == "DeliveryReceipt":
            continue
        sent[(message.message_type, message.sender)] += 1
        for recipient in message.recipients:
            received[(message.message_type, recipient)] += 1
    return tuple(
        Volume(kind, agency, sent[(kind, agency)], received[(kind, agency)])
        for kind, agency in sorted(set(sent) | set(received))
    )


def _breached(deadline: Deadline, now: datetime) -> bool:
    return deadline.breached or (deadline.is_open and deadline.due_at <= now)


def timeliness(deadlines: Iterable[Deadline], now: datetime) -> tuple[Timeliness, ...]:
    groups: dict[tuple[str, str, str | None], list[Deadline]] = defaultdict(list)
    for deadline in deadlines:
        groups[(deadline.debtor, deadline.kind.value, deadline.rag)].append(deadline)
    figures = []
    for (agency, kind, rag), owed in sorted(
        groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2] or "")
    ):
        closed = [d for d in owed if d.closed_at is not None]
        hours = sorted(
            (d.closed_at - d.started_at) / timedelta(hours=1) for d in closed if d.closed_at
        )
        figures.append(
            Timeliness(
                agency=agency,
                kind=kind,
                rag=rag,
                owed=len(owed),
                on_time=sum(not d.breached for d in closed),
                late=sum(d.breached for d in closed),
                overdue=sum(d.is_open and d.due_at <= now for d in owed),
                median_hours=median(hours) if hours else None,
                p90_hours=_p90(hours),
            )
        )
    return tuple(figures)


def _p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=10, method="inclusive")[-1]


def breaches_by_rag(deadlines: Iterable[Deadline], now: datetime) -> dict[str, int]:
    """Response deadlines breached (answered late or still overdue), by RAG."""
    counted = Counter(d.rag for d in deadlines if d.rag is not None and _breached(d, now))
    return dict(sorted(counted.items()))


def failure_check(reason: str) -> str:
    """The failed check named in a rejection reason ("check: why", or a negative receipt's)."""
    if reason.startswith(NEGATIVE_RECEIPT):
        return reason.rsplit(": ", 1)[-1]
    return reason.split(":", 1)[0]


def failures(
    rejections: Iterable[TimelineEntry], messages: Iterable[MessageRecord]
) -> tuple[Failure, ...]:
    senders = {m.message_id: m.sender for m in messages}
    counted = Counter(
        (failure_check(r.reason or "unknown"), senders.get(r.message_id, "unknown"))
        for r in rejections
    )
    return tuple(Failure(check, sender, n) for (check, sender), n in sorted(counted.items()))


STRONG_SCHEMES = frozenset({"nhs-number", "upn", "pnc-id", "local"})


def referral_subjects(root: etree._Element) -> tuple[frozenset[str], ...]:
    """Each subject of a Referral as its scheme:value keys (a local id keeps its system).

    Never names; a subject without a strong identifier has no keys.
    """
    subjects = []
    for subject in root.iterfind(f"{{{NAMESPACE}}}Subjects/{{{NAMESPACE}}}Subject"):
        keys = set()
        for identifier in subject.iterfind(f"{{{NAMESPACE}}}Identifier"):
            scheme = identifier.get("scheme", "")
            value = (identifier.text or "").strip().upper()
            if scheme in STRONG_SCHEMES and value:
                system = identifier.get("system", "") if scheme == "local" else ""
                keys.add(f"{scheme}:{system}:{value}")
        subjects.append(frozenset(keys))
    return tuple(subjects)


def repeat_referrals(
    referrals: Iterable[tuple[datetime, Sequence[frozenset[str]]]], days: int
) -> Repeats:
    """Referrals (time, subjects' keys) about a subject already referred in the previous ``days``.

    Two subjects are the same person when they share any identifier; each
    person counts once in ``subjects_referred_again``.
    """
    window = timedelta(days=days)
    person_of: dict[str, int] = {}  # identifier key -> person number
    last_referred: dict[int, datetime] = {}
    people = 0
    counted = repeats = 0
    again: set[int] = set()
    for at, subjects in sorted(referrals, key=lambda r: r[0]):
        identified = [keys for keys in subjects if keys]
        if not identified:
            continue
        counted += 1
        repeated = False
        for keys in identified:
            known = sorted({person_of[k] for k in keys if k in person_of})
            if not known:
                people += 1
            person = known[0] if known else people
            for key in keys:
                person_of[key] = person
            previous = max((last_referred[p] for p in known), default=None)
            if previous is not None and at - previous <= window:
                repeated = True
                again.add(person)
            last_referred[person] = at
        repeats += repeated
    return Repeats(days, counted, repeats, len(again))
