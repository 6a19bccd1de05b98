"""The message-lifecycle state machine: which event may move a message to which state.

Pure. The happy path is submitted → routed → delivered → answered; a message
may be rejected, with a reason, from any non-terminal state. Answered and
rejected are terminal.

RabbitMQ delivers at least once, so the router sees the same event again after
a crash or a redelivery, and it sees stragglers: a receipt that arrives after
the answer it preceded, a redelivered ingress message after the message was
routed. ``transition`` reports those as ``changed=False`` rather than failing,
so the caller records nothing and acks. Only moves that no ordering of a
correct exchange can produce raise ``IllegalTransition``: delivered before
routed, a positive and a negative receipt for the same message, anything
after rejected.

Decisions:
- ``rejected`` is legal for a message never seen before (``current=None``):
  the router may refuse a message on its first sighting (bad signature,
  policy) and must still record why.
- ``answered`` is legal from ``routed`` as well as ``delivered``: a response
  proves delivery, and the receipt may be late. The late receipt is then a
  straggler. Whether a reply answers a message is reply_rules' question
  (only an InformationResponse answers an InformationRequest).
- ``released`` is the one way out of ``rejected``: an operator released the
  quarantined copy once its cause was fixed (``mash-gateway quarantine
  release``), so it is ``submitted`` again and the router, which routes a
  redelivered message only in ``submitted`` or ``routed``, judges it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.core.errors import GatewayError


class State(StrEnum):
    SUBMITTED = "submitted"
    ROUTED = "routed"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    REJECTED = "rejected"


class Event(StrEnum):
    SUBMITTED = "submitted"
    ROUTED = "routed"
    RECEIPTED_POSITIVE = "receipted-positive"
    RECEIPTED_NEGATIVE = "receipted-negative"
    ANSWERED = "answered"
    REJECTED = "rejected"
    RELEASED = "released"  # an operator released it from quarantine: the router judges it again


TERMINAL = frozenset({State.ANSWERED, State.REJECTED})


class IllegalTransition(GatewayError):
    """An event that cannot happen to a message in its current state."""


@dataclass(frozen=True)
class Outcome:
    """The state after an event, and whether the event changed it (False: a repeat or straggler)."""

    state: State
    changed: bool


_S, _E = State, Event

# (current state, event) -> next state. A pair whose next state equals the
# current state is a repeat or a straggler; a pair not listed is illegal.
_NEXT: dict[tuple[State | None, Event], State] = {
    (None, _E.SUBMITTED): _S.SUBMITTED,
    (None, _E.REJECTED): _S.REJECTED,
    (_S.SUBMITTED, _E.SUBMITTED): _S.SUBMITTED,
    (_S.SUBMITTED, _E.ROUTED): _S.ROUTED,
    (_S.SUBMITTED, _E.REJECTED): _S.REJECTED,
    (_S.ROUTED, _E.SUBMITTED): _S.ROUTED,
    (_S.ROUTED, _E.ROUTED): _S.ROUTED,
    (_S.ROUTED, _E.RECEIPTED_POSITIVE): _S.DELIVERED,
    (_S.ROUTED, _E.RECEIPTED_NEGATIVE): _S.REJECTED,
    (_S.ROUTED, _E.ANSWERED): _S.ANSWERED,
    (_S.ROUTED, _E.REJECTED): _S.REJECTED,
    (_S.DELIVERED, _E.SUBMITTED): _S.DELIVERED,
    (_S.DELIVERED, _E.ROUTED): _S.DELIVERED,
    (_S.DELIVERED, _E.RECEIPTED_POSITIVE): _S.DELIVERED,
    (_S.DELIVERED, _E.ANSWERED): _S.ANSWERED,
    (_S.DELIVERED, _E.REJECTED): _S.REJECTED,
    (_S.ANSWERED, _E.SUBMITTED): _S.ANSWERED,
    (_S.ANSWERED, _E.ROUTED): _S.ANSWERED,
    (_S.ANSWERED, _E.RECEIPTED_POSITIVE): _S.ANSWERED,
    (_S.ANSWERED, _E.ANSWERED): _S.ANSWERED,
    (_S.REJECTED, _E.RECEIPTED_NEGATIVE): _S.REJECTED,
    (_S.REJECTED, _E.REJECTED): _S.REJECTED,
    (_S.REJECTED, _E.RELEASED): _S.SUBMITTED,
    (_S.SUBMITTED, _E.RELEASED): _S.SUBMITTED,
}


def transition(current: State | None, event: Event) -> Outcome:
    """The outcome of ``event`` on a message in state ``current`` (None: never seen)."""
    try:
        following = _NEXT[(current, event)]
    except KeyError:
        where = "an unknown message" if current is None else f"a {current.value} message"
        raise IllegalTransition(f"event {event.value} is not allowed on {where}") from None
    return Outcome(following, changed=following is not current)
