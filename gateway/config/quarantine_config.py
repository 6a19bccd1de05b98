"""The ``[quarantine]`` table of gateway.toml: how long quarantined copies are kept, and how many.

Pure: the TOML value in, a ``quarantine.Policy`` out, or the error that
``fail`` builds naming the key path. Layout (the defaults)::

    [quarantine]
    retention_days = 30          # a held copy older than this is expired (its row stays)
    max_messages = 10000         # past either limit the keeper takes no more off the
    max_bytes = 1073741824       # queue: they wait in RabbitMQ, and an alert fires before

Absent means the defaults: every area has a quarantine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.config.config_checks import Fail, known, table
from gateway.core.quarantine import Policy

KEYS = ("retention_days", "max_messages", "max_bytes")


def parse_quarantine(value: Any, fail: Fail) -> Policy:
    """The ``[quarantine]`` table's policy; the defaults when it is absent."""
    if value is None:
        return Policy()
    known(table(value, "quarantine", fail), "quarantine", set(KEYS), fail)
    default = Policy()
    numbers = {
        key: _positive(value.get(key), f"quarantine.{key}", fail) for key in KEYS if key in value
    }
    return Policy(
        retention=timedelta(days=numbers["retention_days"])
        if "retention_days" in numbers
        else default.retention,
        max_messages=numbers.get("max_messages", default.max_messages),
        max_bytes=numbers.get("max_bytes", default.max_bytes),
    )


def _positive(number: Any, key: str, fail: Fail) -> int:
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise fail(key, f"{number!r} must be a whole number of at least 1")
    return number
