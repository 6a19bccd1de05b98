"""The --from/--to days of the commands that look back over a period (audit export, report)."""

from __future__ import annotations

import argparse
from datetime import date

from gateway.core.errors import GatewayError


class PeriodError(GatewayError):
    """--from is after --to."""


def day(text: str) -> date:
    """An argparse type: a YYYY-MM-DD day, or an error that says so."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def check_order(first: date, last: date) -> None:
    if first > last:
        raise PeriodError(f"--from {first} is after --to {last}")
