"""structlog set-up: JSON lines in production, readable console lines for people at a terminal.

What a log line may carry: ids (message, correlation, key), message types,
agencies, check names, reasons built from those, counts and durations.
Never personal data: the router cannot read payloads, and edges log nothing
from them. The services bind ``message_id`` and ``correlation_id`` into the
context (``structlog.contextvars``) while they work on a message, so every
line written meanwhile, by any module, names the message it is about.

Levels mean:
- ``info``: the normal flow (submitted, routed, receipt forwarded, started);
- ``warning``: one message was refused, quarantined or could not be
  answered; the service carries on, the message is kept with its reason;
- ``error``: the service cannot do its job (broker unreachable, config
  refused, a handler failing over and over) and a person must act.

Libraries that log through the standard ``logging`` module (aio-pika,
aiormq, aiohttp) are rendered by the same processors, so a production log
is JSON throughout; their chatter below WARNING is dropped. The servers
that log what a client sent (aiohttp's request handling quotes header
bytes in its errors; aiosmtpd a session's traceback) are cut to the
logger, the level and the exception's class: a client's bytes may carry
personal data, and ids are not theirs to log.
"""

from __future__ import annotations

import argparse
import logging
import sys

import structlog

LIBRARY_LEVEL = logging.WARNING
# Loggers whose messages and tracebacks quote what a client sent (see above).
CLIENT_QUOTING_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "mail.log")


class _WithoutClientBytes(logging.Filter):
    """Cut a client-quoting library's record to its logger, level and exception class."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(CLIENT_QUOTING_LOGGERS):
            failed = record.exc_info[0] if record.exc_info else None
            kind = f" ({failed.__name__})" if failed else ""
            record.msg = f"{record.name}: a client's request failed{kind}"
            record.args = ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def configure(json: bool | None = None, level: int = logging.INFO, quiet: bool = False) -> None:
    """JSON when ``json`` is True, or when stderr is not a terminal and ``json`` is None.

    ``quiet`` keeps warnings and errors only, for commands whose own output tells the story.
    """
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    threshold = logging.WARNING if quiet else level
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,  # commands reconfigure after start-up
    )
    _route_stdlib_logging(shared, renderer, max(threshold, LIBRARY_LEVEL))


def _route_stdlib_logging(
    shared: list[structlog.typing.Processor],
    renderer: structlog.typing.Processor,
    level: int,
) -> None:
    """Render the standard library's records (aio-pika's, aiohttp's) like our own lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(_WithoutClientBytes())
    handler.set_name("mash-gateway")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "mash-gateway"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json-logs`` for the long-running services (router, intake, adapters)."""
    parser.add_argument(
        "--json-logs",
        action="store_true",
        default=None,
        help="JSON log lines (default: JSON unless stderr is a terminal)",
    )
