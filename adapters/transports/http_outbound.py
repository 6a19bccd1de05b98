"""HTTP outbound: each message for the agency is POSTed to its webhook; the receipt waits for a 2xx.

The POST carries the native document and the header facts as headers
(``X-Message-Id``, ``X-Correlation-Id``, ``X-In-Reply-To``,
``X-Message-Type``, ``X-Sender``) and ``Idempotency-Key: <message id>``, so
the agency system can recognise a repeat after a lost response.

A message with files is one ``multipart/form-data`` POST (RFC 7578), the
same form the inbound endpoint takes: the ``document`` part (the native
document, the profile's media type), then an ``attachment`` part per file
(``filename``, ``Content-Type``, and ``Content-Digest: sha-256=:...:``,
RFC 9530, the SHA-256 the sender signed), and ``X-Attachment-Count``. Each
file is streamed from the edge's verified copy on disk, never held whole,
and read afresh on each attempt; the idempotency rules are the same (the
key is the message id), so a case system keeps one copy of the message and
its files. One POST, rather than a download URL, so the receipt still means
the agency system holds every file. A form has no overall time limit, only
REQUEST_TIMEOUT_SECONDS to connect and between reads, so a large file takes
the time it needs.

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
import base64
from contextlib import ExitStack

import aiohttp
import structlog

from adapters.inbound import failed
from adapters.profile import Profile
from gateway.config.adapter_config import HttpSettings
from gateway.services.edge import Delivered, HandlerRefused
from gateway.services.transfer_staging import ReceivedAttachment

log = structlog.get_logger("adapters.http")

TRANSPORT = "http"
RETRIED_4XX = frozenset({408, 429})
REQUEST_TIMEOUT_SECONDS = 30.0
STREAMED_TIMEOUT = aiohttp.ClientTimeout(
    total=None, sock_connect=REQUEST_TIMEOUT_SECONDS, sock_read=REQUEST_TIMEOUT_SECONDS
)


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

    async def _post(
        self, native: bytes, headers: dict[str, str], files: tuple[ReceivedAttachment, ...]
    ) -> int:
        """One attempt: the document alone, or the form with its files streamed from disk."""
        if not files:
            async with self._client().post(self.url, data=native, headers=headers) as reply:
                return reply.status
        with ExitStack() as opened:
            form = aiohttp.MultipartWriter("form-data")
            document = form.append(native, {"Content-Type": headers["Content-Type"]})
            document.set_content_disposition("form-data", name="document")
            for file in files:
                handle = opened.enter_context(file.path.open("rb"))
                digest = base64.b64encode(bytes.fromhex(file.facts.sha256)).decode()
                part = form.append(
                    handle,
                    {
                        "Content-Type": file.facts.media_type,
                        "Content-Digest": f"sha-256=:{digest}:",
                    },
                )
                part.set_content_disposition(
                    "form-data", name="attachment", filename=file.facts.file_name
                )
            streamed = {k: v for k, v in headers.items() if k != "Content-Type"}
            streamed["X-Attachment-Count"] = str(len(files))
            async with self._client().post(
                self.url, data=form, headers=streamed, timeout=STREAMED_TIMEOUT
            ) as reply:
                return reply.status

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
                status = await self._post(native, headers, delivered.attachments)
                if 200 <= status < 300:
                    return
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status not in RETRIED_4XX:
                    failed(self.agency, TRANSPORT, "webhook-refused")
                    raise WebhookFailed(f"webhook refused message {fields.message_id}: {problem}")
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
