"""structlog set-up: JSON lines in production, readable console lines for people at a terminal.

Log events carry ids, types, agencies, checks and reasons only; the payload
never reaches a logger, because the router cannot read it and edges log
nothing from it.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(json: bool | None = None, level: int = logging.INFO, quiet: bool = False) -> None:
    """JSON when ``json`` is True, or when stderr is not a terminal and ``json`` is None.

    ``quiet`` keeps warnings and errors only, for commands whose own output tells the story.
    """
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING if quiet else level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,  # commands reconfigure after start-up
    )
