"""Every (state, event) pair of the message lifecycle, against a table written out by hand."""

from __future__ import annotations

import itertools

import pytest

from gateway.core.errors import GatewayError
from gateway.core.lifecycle import (
    TERMINAL,
    Event,
    IllegalTransition,
    Outcome,
    State,
    transition,
)

pytestmark = pytest.mark.unit

S, E = State, Event
EVENTS = (
    E.SUBMITTED,
    E.ROUTED,
    E.RECEIPTED_POSITIVE,
    E.RECEIPTED_NEGATIVE,
    E.ANSWERED,
    E.REJECTED,
    E.RELEASED,
)
# Columns follow EVENTS. "!" is illegal; "=" is a repeat or straggler (unchanged);
# a state name is a change to that state.
TABLE: dict[State | None, tuple[str, ...]] = {
    None: ("submitted", "!", "!", "!", "!", "rejected", "!"),
    S.SUBMITTED: ("=", "routed", "!", "!", "!", "rejected", "="),
    S.ROUTED: ("=", "=", "delivered", "rejected", "answered", "rejected", "!"),
    S.DELIVERED: ("=", "=", "=", "!", "answered", "rejected", "!"),
    S.ANSWERED: ("=", "=", "=", "!", "=", "!", "!"),
    S.REJECTED: ("!", "!", "!", "=", "!", "=", "submitted"),
}


def test_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == {None, *State}
    assert set(EVENTS) == set(Event)


CASES = [
    (state, event, TABLE[state][i])
    for state, (i, event) in itertools.product(TABLE, enumerate(EVENTS))
]


@pytest.mark.parametrize(("state", "event", "expected"), CASES)
def test_every_pair(state: State | None, event: Event, expected: str) -> None:
    if expected == "!":
        with pytest.raises(IllegalTransition) as info:
            transition(state, event)
        assert event.value in str(info.value)
        assert (state.value if state else "unknown message") in str(info.value)
    elif expected == "=":
        assert transition(state, event) == Outcome(state, changed=False)  # type: ignore[arg-type]
    else:
        assert transition(state, event) == Outcome(State(expected), changed=True)


def test_illegal_transition_is_a_gateway_error() -> None:
    with pytest.raises(GatewayError, match="receipted-positive is not allowed on a submitted"):
        transition(S.SUBMITTED, E.RECEIPTED_POSITIVE)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_only_a_release_leaves_a_terminal_state(terminal: State) -> None:
    for event in EVENTS:
        if (terminal, event) == (S.REJECTED, E.RELEASED):  # an operator's, from quarantine
            continue
        try:
            outcome = transition(terminal, event)
        except IllegalTransition:
            continue
        assert outcome == Outcome(terminal, changed=False)


def test_the_happy_path_of_an_information_request() -> None:
    state: State | None = None
    for event in (E.SUBMITTED, E.ROUTED, E.RECEIPTED_POSITIVE, E.ANSWERED):
        outcome = transition(state, event)
        assert outcome.changed
        state = outcome.state
    assert state is S.ANSWERED
