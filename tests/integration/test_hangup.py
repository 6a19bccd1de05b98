"""One SIGHUP reaches every part of a process that reloads (router and adapters in `run`)."""

from __future__ import annotations

import os
import signal

import pytest

from gateway.infra.hangup import on_hangup
from tests.integration.exchange_harness import eventually

pytestmark = pytest.mark.integration


async def test_every_subscriber_hears_one_sighup_and_a_failing_one_stops_none() -> None:
    heard: list[str] = []

    def failing() -> None:
        heard.append("failing")
        raise RuntimeError("a reload that breaks")

    unsubscribe = [
        on_hangup(lambda: heard.append("router")),
        on_hangup(failing),
        on_hangup(lambda: heard.append("adapter")),
    ]
    try:
        os.kill(os.getpid(), signal.SIGHUP)

        async def all_heard() -> bool:
            return len(heard) == 3

        await eventually(all_heard)
        unsubscribe.pop()()  # the adapter stopped: the others still hear the next one
        os.kill(os.getpid(), signal.SIGHUP)

        async def heard_again() -> bool:
            return len(heard) == 5

        await eventually(heard_again)
    finally:
        for leave in unsubscribe:
            leave()
    assert heard == ["router", "failing", "adapter", "router", "failing"]
