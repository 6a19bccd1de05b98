"""A message's or a case's story as the tracking store tells it, rendered by the views.

`track`, the demo and the console read it the same way: ids, types,
agencies, states, times and reasons, never a payload.
"""

from __future__ import annotations

from datetime import datetime

from gateway.core.errors import GatewayError
from gateway.store import CaseReader
from gateway.views import timeline, track_json


class NotTracked(GatewayError):
    """The tracking store has no message with that id, or no case with that correlation id."""


async def message_report(
    store: CaseReader, message_id: str, where: str, as_json: bool = False
) -> str:
    message = await store.message(message_id)
    if message is None:
        raise NotTracked(f"no message {message_id!r} in the tracking store ({where})")
    render = track_json.message_json if as_json else timeline.message_view
    return render(message, await store.timeline(message_id))


async def case_report(
    store: CaseReader, correlation_id: str, where: str, now: datetime, as_json: bool = False
) -> str:
    messages = await store.case_messages(correlation_id)
    if not messages:
        raise NotTracked(
            f"no messages with correlation id {correlation_id!r} in the tracking store ({where})"
        )
    story = await store.case_timeline(correlation_id)
    deadlines = await store.case_deadlines(correlation_id)
    events = await store.case_deadline_events(correlation_id) if deadlines else []
    if as_json:
        return track_json.case_json(correlation_id, messages, story, deadlines, events, now)
    view = timeline.case_view(correlation_id, messages, story)
    if not deadlines:
        return view
    return f"{view}\n\n{timeline.deadlines_view(deadlines, events, now)}"
