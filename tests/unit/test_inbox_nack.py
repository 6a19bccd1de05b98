"""What a nack from an inbox means to the router: a refusal only when the inbox is missing or full.

The router's retry of a transient nack, against the real broker, is in
tests/integration/test_whole_rejection.py; a cluster's leader election in
tests/fault/test_cluster.py.
"""

from __future__ import annotations

import pytest

from gateway.broker.inbox_room import nack_means_full
from gateway.broker.topology import Limits

pytestmark = pytest.mark.unit

LIMITS = Limits(inbox_max_length=10)


def test_a_missing_inbox_is_full() -> None:
    assert nack_means_full(None, LIMITS)


@pytest.mark.parametrize("depth", [10, 11])  # a quorum queue may overshoot its bound a little
def test_an_inbox_at_or_past_its_bound_is_full(depth: int) -> None:
    assert nack_means_full(depth, LIMITS)


@pytest.mark.parametrize("depth", [0, 9])  # 0: what RabbitMQ reports for a leaderless queue
def test_a_nack_from_an_inbox_with_room_is_transient(depth: int) -> None:
    assert not nack_means_full(depth, LIMITS)
