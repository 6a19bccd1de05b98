"""Every Prometheus metric of the gateway, in one registry of our own, and the calls that move them.

Naming follows the Prometheus conventions: the ``mash_gateway_`` prefix,
base units (seconds), ``_total`` on counters. Labels carry only bounded,
non-personal values: message types, agency ids, outcomes, check names,
RAG ratings and deadline kinds. Never a message id, a correlation id or
anything from a payload. Values the router has not verified (a claimed
sender, an unknown recipient) are folded into ``unknown`` so a forger
cannot grow the label space.

A private ``CollectorRegistry`` (not the client's global one) keeps what
``/metrics`` serves to exactly these metrics plus the process collector,
whatever a library registers globally.

Other services move the counters defined here:
- the e-mail intake: ``INTAKE_RESULTS.labels(result=..., reason=...).inc()``;
- adapters: ``ADAPTER_ERRORS.labels(agency=..., transport=..., stage=...).inc()``;
- gpg calls: ``with timed("gpg_decrypt_verify"):`` (or ``gpg_sign_encrypt``);
- TLS certificates: ``certificate_watch`` sets ``CERTIFICATE_EXPIRY`` per file, by use;
- the escalation loop: ``set_deadline_counts(rows)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.core import vocabulary
from gateway.core.envelope import HeaderFields
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.records import DeadlineCount, MessageRecord
from gateway.core.registry import Registry
from gateway.infra.clock import utc_now

# The _created series double the exposition and no dashboard or alert here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
_counter = partial(Counter, registry=REGISTRY)
_gauge = partial(Gauge, registry=REGISTRY)
_histogram = partial(Histogram, registry=REGISTRY)

UNKNOWN = "unknown"
# Seconds: four confirmed hops take ~5 ms; deadlines are hours, so the tail reaches a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)
# Seconds: envelope operations take ~0.2 ms, a gpg call ~10 ms.
OPERATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0)

MESSAGES = _counter(
    "mash_gateway_messages_total",
    "Messages by type, sender, recipient and outcome "
    "(submitted at an edge; routed, rejected, delivered or refused at the router).",
    ["message_type", "sender", "recipient", "outcome"],
)
SUBMIT_TO_ROUTED = _histogram(
    "mash_gateway_submit_to_routed_seconds",
    "From the header's created_at to the router publishing the message to its inboxes.",
    ["message_type"],
    buckets=LATENCY_BUCKETS,
)
SUBMIT_TO_RECEIPTED = _histogram(
    "mash_gateway_submit_to_receipted_seconds",
    "From the original's created_at to the router forwarding its delivery receipt.",
    ["message_type"],
    buckets=LATENCY_BUCKETS,
)
REJECTS = _counter(
    "mash_gateway_rejects_total",
    "Messages refused, by the failed check and where (router, or the receiving edge).",
    ["check", "stage"],
)
DIRECTORY_VERSION = _gauge(
    "mash_gateway_directory_version",
    "Version of the signed area directory this service applies (0: its config file's own).",
)
DIRECTORY_REFUSED = _counter(
    "mash_gateway_directory_refused_total",
    "Area directories refused, by why: malformed, area, not-newer, signer, signature, invalid.",
    ["reason"],
)
SENDER_LOGIN_MISMATCHES = _counter(
    "mash_gateway_sender_login_mismatches_total",
    "Ingress messages quarantined because the broker login that published them is not their "
    "claimed sender's, by the agency whose login it was (unknown: another login, or none).",
    ["login_agency"],
)
OPERATION_DURATION = _histogram(
    "mash_gateway_operation_duration_seconds",
    "Time of one cryptographic operation: envelope seal, open, verify; gpg calls.",
    ["operation"],
    buckets=OPERATION_BUCKETS,
)
DEADLINES_OPEN = _gauge(
    "mash_gateway_deadlines_open",
    "Open deadlines by kind (response, decision, delivery), RAG and the agency that owes them.",
    ["kind", "rag", "agency"],
)
DEADLINES_BREACHED = _gauge(
    "mash_gateway_deadlines_breached",
    "Open deadlines already past due, by kind, RAG and the agency that owes them.",
    ["kind", "rag", "agency"],
)
ESCALATIONS = _counter(
    "mash_gateway_escalations_total",
    "Escalations fired, by deadline kind and ladder level (1: reminder and notice, 2: contacts).",
    ["kind", "level"],
)
ESCALATION_COPIES_REFUSED = _counter(
    "mash_gateway_escalation_copies_refused_total",
    "Escalation copies an inbox refused as full or missing; the others of the escalation went.",
    ["agency"],
)
QUEUE_POLL_ERRORS = _counter(
    "mash_gateway_queue_poll_errors_total",
    "Failed polls of the broker's queue depths (broker down, or a queue missing).",
)
INTAKE_RESULTS = _counter(
    "mash_gateway_intake_results_total",
    "E-mails the secure-mail intake accepted or rejected, by result and reason.",
    ["result", "reason"],
)
ADAPTER_ERRORS = _counter(
    "mash_gateway_adapter_errors_total",
    "Adapter failures by agency, transport and stage.",
    ["agency", "transport", "stage"],
)
CERTIFICATE_EXPIRY = _gauge(
    "mash_gateway_certificate_expiry_seconds",
    "Seconds until a certificate a service uses expires (its own, a CA it trusts), by use.",
    ["use"],
)


_deadline_series: set[tuple[str, str, str]] = set()


def set_deadline_counts(rows: Iterable[DeadlineCount]) -> None:
    """Replace the deadline gauges with ``rows``; a combination no longer listed disappears.

    New values are set before stale series are removed, so a concurrent scrape
    never sees the gauges empty.
    """
    fresh: set[tuple[str, str, str]] = set()
    for row in rows:
        labels = (row.kind, row.rag or "none", row.agency)
        DEADLINES_OPEN.labels(*labels).set(row.open)
        DEADLINES_BREACHED.labels(*labels).set(row.overdue)
        fresh.add(labels)
    for stale in _deadline_series - fresh:
        DEADLINES_OPEN.remove(*stale)
        DEADLINES_BREACHED.remove(*stale)
    _deadline_series.clear()
    _deadline_series.update(fresh)


@contextmanager
def timed(operation: str) -> Iterator[None]:
    """Observe the block's duration as ``operation`` (seal, open, verify, gpg_...)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        OPERATION_DURATION.labels(operation).observe(time.perf_counter() - started)


def _type_label(message_type: str) -> str:
    return message_type if message_type in vocabulary.message_types() else UNKNOWN


def _agency_label(agency: str, known: Collection[str]) -> str:
    return agency if agency in known else UNKNOWN


def submitted(fields: HeaderFields) -> None:
    """An edge published a message: one count per recipient."""
    for recipient in fields.recipients:
        MESSAGES.labels(fields.message_type, fields.sender, recipient, "submitted").inc()


def routed(fields: HeaderFields, recipients: Iterable[str], now: datetime) -> None:
    """The router published a verified, allowed message to every recipient's inbox."""
    for recipient in recipients:
        MESSAGES.labels(fields.message_type, fields.sender, recipient, "routed").inc()
    SUBMIT_TO_ROUTED.labels(fields.message_type).observe(_seconds(fields.created_at, now))


def receipted(original: MessageRecord | None, by: str, positive: bool, now: datetime) -> None:
    """A receipt for ``original`` from recipient ``by`` was forwarded to the original's sender."""
    if original is None:
        return
    outcome = "delivered" if positive else "refused"
    MESSAGES.labels(original.message_type, original.sender, by, outcome).inc()
    SUBMIT_TO_RECEIPTED.labels(original.message_type).observe(_seconds(original.created_at, now))


def rejected(facts: HeaderFields | ClaimedFacts | None, check: str, known: Collection[str]) -> None:
    """The router refused a message; unverified or unregistered values count as ``unknown``.

    ``facts`` are the verified header's, or what an unverified one claims (no recipients).
    """
    REJECTS.labels(_check_label(check), "router").inc()
    message_type = _type_label(facts.message_type) if facts is not None else UNKNOWN
    sender = _agency_label(facts.sender, known) if facts is not None else UNKNOWN
    recipients = facts.recipients if isinstance(facts, HeaderFields) else ()
    for recipient in recipients or (UNKNOWN,):
        MESSAGES.labels(message_type, sender, _agency_label(recipient, known), "rejected").inc()


def sender_login_mismatch(login: str | None, prefix: str, known: Collection[str]) -> None:
    """A login published as another sender; labelled by the login's own agency, never the claim."""
    agency = login[len(prefix) :] if login is not None and login.startswith(prefix) else UNKNOWN
    SENDER_LOGIN_MISMATCHES.labels(_agency_label(agency, known)).inc()


def refused_at_edge(check: str) -> None:
    """A receiving edge refused a message (negative receipt, then quarantine)."""
    REJECTS.labels(_check_label(check), "edge").inc()


def _check_label(check: str) -> str:
    return check if check in vocabulary.enumeration("FailedCheck") else UNKNOWN


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def key_expiry_seconds(registry: Registry, now: datetime) -> dict[tuple[str, str, str], float]:
    """Per (agency, use, role): seconds until it has no usable key left; 0 when it has none now.

    The role (``edge``, or ``intake`` for the e-mail intake's signing key for the
    agency) is a slot of its own: neither side may sign with the other's key.

    The latest expiry among the usable keys counts, not the soonest: after a
    rotation the old key runs out on purpose, and only the lack of any
    successor needs a person.
    """
    latest: dict[tuple[str, str, str], float] = {}
    for key in registry.keys.values():
        slot = (key.agency, key.use.value, key.role)
        left = (key.expires - now).total_seconds() if key.problem_at(now) is None else 0.0
        latest[slot] = max(latest.get(slot, 0.0), left)
    return latest


class KeyExpiryCollector(Collector):
    """``mash_gateway_key_expiry_seconds``, computed at each scrape from the registry in force."""

    def __init__(self, source: Callable[[], Registry | None], clock: Callable[[], datetime]):
        self.source = source
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mash_gateway_key_expiry_seconds",
            "Seconds until an agency has no usable key for a use (sign, encrypt) and role "
            "(edge, intake); 0: none now.",
            labels=["agency", "use", "role"],
        )
        registry = self.source()
        if registry is not None:
            for (agency, use, role), seconds in sorted(
                key_expiry_seconds(registry, self.clock()).items()
            ):
                family.add_metric([agency, use, role], seconds)
        yield family


_key_registry: list[Registry] = []


def track_keys(registry: Registry) -> None:
    """Make ``registry`` the one key expiry is reported from (at start-up and on SIGHUP)."""
    _key_registry[:] = [registry]


def _tracked_registry() -> Registry | None:
    return _key_registry[0] if _key_registry else None


REGISTRY.register(KeyExpiryCollector(_tracked_registry, utc_now))


@dataclass(frozen=True)
class QueueDepths:
    """One poll of the broker: ready messages and consumers per agency's inbox and ingress."""

    quarantine: int
    inboxes: dict[str, tuple[int, int]]  # agency -> (ready messages, consumers)
    ingresses: dict[str, tuple[int, int]]  # agency -> (ready messages, the router's consumers)


class QueueDepthCollector(Collector):
    """The queue gauges, from the latest poll; absent in a process that does not poll.

    A gauge that read 0 before any poll, or in the intake's process, would
    claim an empty quarantine nobody looked at.
    """

    def __init__(self) -> None:
        self.latest: QueueDepths | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        latest = self.latest
        if latest is None:
            return
        yield GaugeMetricFamily(
            "mash_gateway_quarantine_messages",
            "Messages waiting in gateway.quarantine (polled from the broker).",
            value=latest.quarantine,
        )
        yield from _per_agency(
            latest.inboxes,
            ("mash_gateway_inbox_messages", "Messages ready in an agency's inbox"),
            ("mash_gateway_inbox_consumers", "Consumers on an agency's inbox"),
        )
        yield from _per_agency(
            latest.ingresses,
            ("mash_gateway_ingress_messages", "Messages ready in an agency's ingress queue"),
            ("mash_gateway_ingress_consumers", "The router's consumers on an agency's ingress"),
        )


def _per_agency(
    depths: dict[str, tuple[int, int]], ready: tuple[str, str], consumers: tuple[str, str]
) -> Iterator[GaugeMetricFamily]:
    """Ready messages and consumers of one queue per agency: each gauge's name and help."""
    messages = GaugeMetricFamily(
        ready[0], f"{ready[1]} (polled from the broker).", labels=["agency"]
    )
    attached = GaugeMetricFamily(
        consumers[0], f"{consumers[1]}; 0 means nobody is taking its messages.", labels=["agency"]
    )
    for agency, (count, consuming) in sorted(depths.items()):
        messages.add_metric([agency], count)
        attached.add_metric([agency], consuming)
    yield messages
    yield attached


QUEUE_DEPTHS = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTHS)

QUARANTINE_HELD = _gauge(
    "mash_gateway_quarantine_held",
    "Quarantined copies the keeper holds (messages, bytes) and its limits ([quarantine]).",
    ["measure"],
)
QUARANTINE_ACTIONS = _counter(
    "mash_gateway_quarantine_actions_total",
    "What became of quarantined copies: taken off the queue, released, discarded, expired.",
    ["action"],
)


def set_quarantine_held(messages: int, size: int, max_messages: int, max_bytes: int) -> None:
    """The keeper's holdings against its limits, for the alert that fires before it fills."""
    for measure, value in (
        ("messages", messages),
        ("bytes", size),
        ("limit_messages", max_messages),
        ("limit_bytes", max_bytes),
    ):
        QUARANTINE_HELD.labels(measure=measure).set(value)
