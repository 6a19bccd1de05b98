"""SIGHUP, shared by everything in one process that reloads (the router, each adapter).

asyncio keeps one handler per signal, so a second ``add_signal_handler``
would silently take SIGHUP from the first: ``mash-gateway run
--with-adapters`` hosts the router and adapters in one process, and each
must hear it. Every subscriber is called, in the order it subscribed; one
that raises is logged and does not stop the rest.
"""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Callable

import structlog

log = structlog.get_logger("gateway.infra.hangup")

Reload = Callable[[], None]
_subscribers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Reload]] = (
    weakref.WeakKeyDictionary()
)


def on_hangup(reload: Reload) -> Callable[[], None]:
    """Call ``reload`` on every SIGHUP to this process; returns what unsubscribes it.

    When the last subscriber leaves, SIGHUP gets its default action back.
    """
    loop = asyncio.get_running_loop()
    subscribers = _subscribers.setdefault(loop, [])
    if not subscribers:
        loop.add_signal_handler(signal.SIGHUP, _call_all, subscribers)
    subscribers.append(reload)

    def unsubscribe() -> None:
        subscribers.remove(reload)
        if not subscribers:
            loop.remove_signal_handler(signal.SIGHUP)
            _subscribers.pop(loop, None)

    return unsubscribe


def _call_all(subscribers: list[Reload]) -> None:
    for reload in list(subscribers):
        try:
            reload()
        except Exception:
            log.exception("reload.failed")
