"""The SMTP shell's own rules: enhanced codes for aiosmtpd's replies, a multi-line reply
sent whole, and the connection cap."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.intake.server import Busy, ConnectionCap, ReplyLines, enhanced

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


def test_a_multi_line_reply_is_held_until_its_last_line_then_sent_whole() -> None:
    reply = ReplyLines()
    assert reply.add("250-mx.hub.example") is None
    assert reply.add("250-SIZE 1000") is None
    assert reply.add("250 HELP") == "250-mx.hub.example\r\n250-SIZE 1000\r\n250 HELP"
    assert reply.add("552 5.3.4 Message too big") == "552 5.3.4 Message too big"  # nothing held
