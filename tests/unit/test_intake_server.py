"""The SMTP shell's own rules: enhanced codes for aiosmtpd's replies, and the connection cap."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.intake.server import Busy, ConnectionCap, enhanced

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("plain", "expected"),
    [
        ("530 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS"),
        ("552 Error: Too much mail data", "552 5.3.4 Message too big for this intake (limit 100"),
        ("552 Error: message size exceeds fixed maximum message size", "552 5.3.4"),
        ("500 Line too long (see RFC5321 4.5.3.1.6)", "500 5.5.2 Line too long"),
        ("250 2.1.0 Sender OK", "250 2.1.0 Sender OK"),
    ],
)
def test_aiosmtpd_replies_get_enhanced_status_codes(plain: str, expected: str) -> None:
    assert enhanced(plain, 100).startswith(expected)


def test_over_the_cap_a_connection_gets_busy_until_one_closes() -> None:
    closers: list[Any] = []

    def make(closed: Any) -> Any:
        closers.append(closed)
        return object()

    cap = ConnectionCap(2, make)
    first, second = cap(), cap()
    assert not isinstance(first, Busy) and not isinstance(second, Busy)
    assert isinstance(cap(), Busy)
    closers[0]()
    assert not isinstance(cap(), Busy)
    assert cap.open == 2
