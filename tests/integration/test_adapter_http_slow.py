"""The HTTP adapter cuts off slow and oversized clients, and keeps serving everyone else.

Issue 14, finding 9: a client that sent one header line every 5 s was still
connected after 36 s. Each test talks raw HTTP over a socket to 127.0.0.1,
in a loop bounded in count (and so in time): the server must close before
the loop runs out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters import http_tokens
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.exchange_harness import Exchange
from tests.integration.test_adapter_http import (
    EXPORT,
    XML,
    Csc,
    Webhook,
    exchange,
    free_port,
    http_adapter,
    post,
    webhook,
)

pytestmark = pytest.mark.integration
__all__ = ["exchange", "webhook"]

TIMEOUTS = "idle_seconds = 1\nbody_seconds = 1\n"
PAUSE_S = 0.25  # between two pieces a slow client sends
PIECES = 60  # at most: 15 s of trickling; a 1 s timeout cuts it off after a few


@dataclass(frozen=True)
class Outcome:
    closed: bool  # the server closed the connection before the client ran out
    sent: int  # pieces sent before it did
    answer: bytes  # what the server wrote back


async def trickle(port: int, pieces: Iterable[bytes]) -> Outcome:
    """Send ``pieces`` PAUSE_S apart on one connection, reading between them, until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer, sent = b"", 0
    try:
        for piece in pieces:
            try:
                writer.write(piece)
                await writer.drain()
                sent += 1
                chunk = await asyncio.wait_for(reader.read(65536), PAUSE_S)
            except TimeoutError:
                continue
            except ConnectionError:
                return Outcome(True, sent, answer)
            if not chunk:
                return Outcome(True, sent, answer)
            answer += chunk
        return Outcome(False, sent, answer)
    finally:
        writer.close()


def head(port: int, token: str, length: int) -> bytes:
    return (
        f"POST /messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.fixture
async def csc(exchange: Exchange, webhook: Webhook, tmp_path: Path) -> AsyncIterator[Csc]:
    port = free_port()
    config = add_adapter(exchange, http_adapter(port, webhook.url) + TIMEOUTS)
    token = http_tokens.issue(config.private_keys_dir, "csc")
    async with running_adapter(config, "csc", tmp_path / "ledger.db"):
        yield Csc(config, f"http://127.0.0.1:{port}", token, webhook)


def port_of(csc: Csc) -> int:
    return int(csc.url.rsplit(":", 1)[1])


async def test_slow_clients_are_cut_off_and_everyone_else_is_served(csc: Csc) -> None:
    port = port_of(csc)
    # A request head sent a line at a time (the attack: one line every 5 s).
    first = f"POST /messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    lines = [first] + [f"X-Slow-{n}: still typing\r\n".encode() for n in range(PIECES)]
    slow_head = await trickle(port, lines)
    assert slow_head.closed and slow_head.sent < len(lines), slow_head
    assert slow_head.answer == b""  # nothing was read as a request

    # A whole head, then the body a few bytes at a time.
    body = [EXPORT[i : i + 8] for i in range(0, 8 * PIECES, 8)]
    assert len(EXPORT) > 8 * PIECES  # the client runs out before the body is whole
    slow_body = await trickle(port, [head(port, csc.token, len(EXPORT)), *body])
    assert slow_body.closed and slow_body.sent < 1 + len(body), slow_body
    assert slow_body.answer.startswith(b"HTTP/1.1 408 "), slow_body.answer[:200]
    assert b'"error": "too-slow"' in slow_body.answer
    assert b"the body did not arrive within 1 s" in slow_body.answer

    # One answered request, then silence on a keep-alive connection.
    ask = (
        f"GET /messages/nothing-here HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {csc.token}\r\n\r\n"
    ).encode()
    idle = await trickle(port, [ask] + [b""] * PIECES)
    assert idle.answer.startswith(b"HTTP/1.1 404 "), idle.answer[:200]
    assert idle.closed and idle.sent < 1 + PIECES, idle

    status, answer = await post(csc, EXPORT, XML)  # and a prompt client is served as ever
    assert status == 202, answer


async def test_oversized_requests_are_refused_and_closed(csc: Csc) -> None:
    port = port_of(csc)
    for extra, why in [
        (b"X-Long: " + b"a" * 9000 + b"\r\n", "a header line over 8190 bytes"),
        (b"".join(f"X-H{n}: 1\r\n".encode() for n in range(40)), "over 32 headers"),
    ]:
        ask = f"GET /messages/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        outcome = await trickle(port, [ask + extra + b"\r\n"] + [b""] * PIECES)
        status_line = outcome.answer.split(b"\r\n", 1)[0]
        assert status_line.endswith(b" 400 Bad Request"), (why, outcome.answer[:200])
        assert outcome.closed, why

    # A body declared over max_body_bytes: refused at once, the rest not waited for.
    too_big = await trickle(port, [head(port, csc.token, 70_000), b"<x>"] + [b""] * PIECES)
    assert too_big.answer.startswith(b"HTTP/1.1 413 "), too_big.answer[:200]
    assert b"the body is over the 65536-byte limit" in too_big.answer
    assert too_big.closed, too_big
    status, answer = await post(csc, EXPORT, XML)
    assert status == 202, answer
