"""HTTP outbound: each message for the agency is POSTed to its webhook; the receipt waits for a 2xx.

The POST carries the native document and the header facts as headers
(``X-Message-Id``, ``X-Correlation-Id``, ``X-In-Reply-To``,
``X-Message-Type``, ``X-Sender``) and ``Idempotency-Key: <message id>``, so
the agency system can recognise a repeat after a lost response.

A network error, a timeout, a 5xx, 408 or 429 is retried with exponential
backoff up to the configured attempts; any other 4xx means the agency
system refused the message and is not retried. Either way the handler then
raises WebhookFailed: the edge does not receipt the message and requeues
it, and past the inbox's delivery limit RabbitMQ moves it to quarantine.
Nothing is lost, and the sender never sees a positive receipt for a message
the agency system does not hold.
"""

from __future__ import annotations

import asyncio

import aiohttp
import structlog

from adapters.inbound import failed
from adapters.profile import Profile
from gateway.config.adapter_config import HttpSettings
from gateway.services.edge import Delivered, HandlerRefused

log = structlog.get_logger("adapters.http")

TRANSPORT = "http"
RETRIED_4XX = frozenset({408, 429})
REQUEST_TIMEOUT_SECONDS = 30.0


class WebhookFailed(HandlerRefused):
    """The agency's webhook did not take a message within the retry budget, or refused it.

    The edge then sends a negative receipt (check ``handler``) and quarantines it.
    """


class WebhookOutbound:
    def __init__(self, settings: HttpSettings, profile: Profile, agency: str) -> None:
        self.url = settings.webhook
        self.settings = settings
        self.profile = profile
        self.agency = agency
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def __call__(self, delivered: Delivered) -> None:
        fields = delivered.header.fields
        native = self.profile.to_native(delivered.payload, f"message {fields.message_id}")
        headers = {
            "Content-Type": self.profile.media_types[0],
            "Idempotency-Key": fields.message_id,
            "X-Message-Id": fields.message_id,
            "X-Correlation-Id": fields.correlation_id,
            "X-Message-Type": fields.message_type,
            "X-Sender": fields.sender,
        }
        if fields.in_reply_to:
            headers["X-In-Reply-To"] = fields.in_reply_to
        delay = self.settings.backoff_seconds
        problem = "no attempt made"
        for attempt in range(1, self.settings.attempts + 1):
            try:
                async with self._client().post(self.url, data=native, headers=headers) as reply:
                    if 200 <= reply.status < 300:
                        return
                    problem = f"HTTP {reply.status}"
                    if 400 <= reply.status < 500 and reply.status not in RETRIED_4XX:
                        failed(self.agency, TRANSPORT, "webhook-refused")
                        raise WebhookFailed(
                            f"webhook refused message {fields.message_id}: {problem}"
                        )
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            log.warning(
                "webhook.retry", agency=self.agency, message_id=fields.message_id, attempt=attempt
            )
            if attempt < self.settings.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        failed(self.agency, TRANSPORT, "webhook-down")
        raise WebhookFailed(
            f"webhook did not take message {fields.message_id} after "
            f"{self.settings.attempts} attempts: {problem}"
        )
