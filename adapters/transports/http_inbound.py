"""HTTP inbound: the agency system POSTs native or canonical documents; we answer with message ids.

Endpoints (aiohttp), all behind ``Authorization: Bearer <token>``
(adapters.http_tokens; 401 otherwise):

- ``POST /messages``: the body is a native document of a media type the
  profile lists, or canonical XML as ``application/vnd.mash-gateway+xml``.
  Optional headers: ``Idempotency-Key`` (a repeat with the same body returns
  the same message ids and sends nothing; with another body it is a 409),
  ``X-Correlation-Id`` and ``X-In-Reply-To``. Answers 202 with
  ``{"message_ids": [...], "status": [...]}``; 413 over the size limit, 415
  for a media type the profile does not take, 422 naming the file, line and
  field for a document that does not map, fails the schema or breaks policy,
  503 when the exchange did not confirm it (retry with the same key).
- ``POST /messages`` as ``multipart/form-data``: the document part, then a
  part per file, each streamed to disk (adapters/transports/http_upload.py
  says the form, the limits and the time allowed); 413 naming the
  ``[limits]`` entry a file passes, 422 for a file name that may not travel.
- ``GET /messages/{id}``: the state and timeline of a message this agency
  sent (ids, states, times and check names only); 404 for any other.

The idempotency keys live in the adapter ledger (state/adapters.db), so a
repeat is recognised across restarts.

Slow and oversized clients are cut off, so a handful of sockets cannot hold
the endpoint (slowloris):
- the request head (request line and headers) must arrive whole within
  ``idle_seconds`` of connecting or of the previous response, and an idle
  keep-alive connection is closed after as long: aiohttp's keepalive timer,
  which from 3.14.4 also runs before the first request and is not reset by
  a trickle of bytes;
- the body must arrive within ``body_seconds`` of the head (408, then close);
- the head is bounded (MAX_LINE bytes a line, MAX_FIELD a header, at most
  MAX_HEADERS headers: 400 beyond) and the body by ``max_body_bytes`` (413;
  the rest of a refused body is waited for LINGER_S at most).
A request whose head and body have arrived is never cancelled by the
client going away (aiohttp's handler_cancellation stays off): a send to
the exchange is finished and recorded, so a retry with the same key finds it.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import uuid
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from adapters.http_tokens import expected_digest, verify
from adapters.inbound import Intake, Reply, digest_of, failed
from adapters.mapping import Canonical, Mapping
from adapters.prepare import Refused
from adapters.transports.http_upload import (
    Pace,
    UploadRefused,
    largest_body,
    read_upload,
    spool_root,
    upload_folder,
)
from gateway.config.adapter_config import HttpSettings
from gateway.infra import tls
from gateway.infra.keyed_locks import KeyedLocks
from gateway.services.transfer_sender import AttachmentFile
from gateway.store import CaseReader

log = structlog.get_logger("adapters.http")

TRANSPORT = "http"
CANONICAL_MEDIA_TYPE = "application/vnd.mash-gateway+xml"
FORM = "multipart/form-data"  # a document and its files: adapters/transports/http_upload.py
MAX_KEY_LENGTH = 200
MAX_LINE = 8190  # bytes in the request line or one header line
MAX_FIELD = 8190  # bytes in one header
MAX_HEADERS = 32
# After a refusal, what is left of the body is read and dropped this long, so the client
# sees the answer rather than a reset; then the connection is closed.
LINGER_S = 2.0


def _problem(status: int, error: str, reason: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="mash-gateway"'} if status == 401 else None
    return web.json_response({"error": error, "reason": reason}, status=status, headers=headers)


def _too_slow(seconds: float) -> web.Response:
    """408, and the connection closed: what is left of a trickled body is not waited for."""
    response = _problem(408, "too-slow", f"the body did not arrive within {seconds:g} s")
    response.force_close()
    return response


class HttpInbound:
    def __init__(self, settings: HttpSettings, intake: Intake, store: CaseReader) -> None:
        self.settings = settings
        self.intake = intake
        self.store = store
        self.keys_dir = intake.edge.config.private_keys_dir
        self._locks = KeyedLocks()
        self._runner: web.AppRunner | None = None
        self._uploads: Path | None = None  # the uploads' spool folder, made in start

    def app(self) -> web.Application:
        # aiohttp refuses a larger body itself; the margin lets our own check answer first.
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        app.router.add_post("/messages", self.post_message)
        app.router.add_get("/messages/{message_id}", self.get_status)
        return app

    async def start(self) -> None:
        expected_digest(self.keys_dir, self.intake.agency)  # no token issued: refuse to start
        self._uploads = await asyncio.to_thread(
            spool_root, self.intake.edge.config.base_dir, self.intake.agency
        )
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            keepalive_timeout=self.settings.idle_seconds,  # the request head, and idle
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
            lingering_time=LINGER_S,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.host, self.settings.port, ssl_context=self._tls()
        )
        await site.start()
        log.info("http.listening", agency=self.intake.agency, port=self.settings.port)

    def _tls(self) -> ssl.SSLContext | None:
        """gateway/infra/tls.py's listener TLS with the configured pair; none on loopback
        (config enforces it)."""
        if self.settings.tls_cert is None or self.settings.tls_key is None:
            return None
        return tls.server_context(self.settings.tls_cert, self.settings.tls_key)

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return (
            scheme.lower() == "bearer"
            and bool(token)
            and verify(self.keys_dir, self.intake.agency, token.strip())
        )

    def _mapping(self, content_type: str) -> Mapping | None:
        if content_type == CANONICAL_MEDIA_TYPE:
            return Canonical()
        if content_type in self.intake.profile.media_types:
            return self.intake.profile.inbound
        return None

    async def post_message(self, request: web.Request) -> web.Response:
        response = await self._post(request)
        if response.status >= 400:
            failed(self.intake.agency, TRANSPORT, f"http-{response.status}")
        return response

    async def _post(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _problem(401, "unauthorised", "a valid bearer token for this agency is required")
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None and not (
            0 < len(idempotency_key) <= MAX_KEY_LENGTH and idempotency_key.isprintable()
        ):
            return _problem(400, "bad-idempotency-key", f"1 to {MAX_KEY_LENGTH} printable chars")
        key = f"http:{idempotency_key}" if idempotency_key else f"http-once:{uuid.uuid4()}"
        reply = Reply(request.headers.get("X-Correlation-Id"), request.headers.get("X-In-Reply-To"))
        if request.content_type == FORM:
            return await self._post_form(request, key, reply)
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _problem(413, "too-large", f"the body is over the {limit}-byte limit")
        mapping = self._mapping(request.content_type)
        if mapping is None:
            return self._unsupported(request.content_type)
        try:
            async with asyncio.timeout(self.settings.body_seconds):
                body = await request.read()
        except TimeoutError:
            return _too_slow(self.settings.body_seconds)
        except web.HTTPRequestEntityTooLarge:
            return _problem(413, "too-large", f"the body is over the {limit}-byte limit")
        if len(body) > limit:
            return _problem(413, "too-large", f"the body is over the {limit}-byte limit")
        async with self._locks.hold(key):
            return await self._send(mapping, body, digest_of(body), key, reply)

    async def _post_form(self, request: web.Request, key: str, reply: Reply) -> web.Response:
        """A document and its files (adapters/transports/http_upload.py), spooled, then sent."""
        limits = self.intake.edge.config.limits
        largest = largest_body(self.settings.max_body_bytes, limits)
        if request.content_length is not None and request.content_length > largest:
            return _problem(
                413,
                "limit",
                f"the form is {request.content_length} bytes, over the {largest} the document "
                "limit and [limits] max_total_bytes allow",
            )
        assert self._uploads is not None  # made in start, before the listener
        folder = await asyncio.to_thread(upload_folder, self._uploads)
        try:
            try:
                upload = await read_upload(
                    await request.multipart(),
                    folder,
                    self.settings.max_body_bytes,
                    limits,
                    Pace(self.settings.body_seconds),
                )
            except UploadRefused as refused:
                response = _problem(refused.status, refused.error, refused.reason)
                response.force_close()  # the rest of the body is not read
                return response
            mapping = self._mapping(upload.media_type)
            if mapping is None:
                return self._unsupported(upload.media_type)
            async with self._locks.hold(key):
                return await self._send(
                    mapping, upload.document, upload.digest, key, reply, upload.files
                )
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    def _unsupported(self, content_type: str) -> web.Response:
        accepted = ", ".join([*self.intake.profile.media_types, CANONICAL_MEDIA_TYPE])
        return _problem(
            415,
            "unsupported-media-type",
            f"{content_type or 'no Content-Type'} is not accepted (use {accepted}, "
            f"or {FORM} with a document part)",
        )

    async def _send(
        self,
        mapping: Mapping,
        body: bytes,
        digest: str,
        key: str,
        reply: Reply,
        files: tuple[AttachmentFile, ...] = (),
    ) -> web.Response:
        earlier = await self.intake.sent(key)
        if earlier is not None and earlier.digest != digest:
            return _problem(
                409, "idempotency-key-reused", "this Idempotency-Key was used for another body"
            )
        try:
            documents = self.intake.prepare(body, "body", mapping)
            if earlier is not None and len(earlier.message_ids) == len(documents):
                return self._accepted(earlier.message_ids, 200)
            ids = await self.intake.send(documents, key, digest, "body", reply, files)
        except Refused as refused:
            log.warning("request.refused", agency=self.intake.agency, stage=refused.stage)
            return _problem(413 if refused.stage == "limit" else 422, refused.stage, refused.reason)
        except Exception:  # the exchange, not the document: the caller retries with its key
            log.exception("request.failed", agency=self.intake.agency)
            return _problem(
                503,
                "unavailable",
                "the exchange did not take it; retry with the same Idempotency-Key",
            )
        return self._accepted(ids, 202)

    @staticmethod
    def _accepted(ids: tuple[str, ...], status: int) -> web.Response:
        body: dict[str, Any] = {
            "message_ids": list(ids),
            "status": [f"/messages/{i}" for i in ids],
        }
        return web.json_response(body, status=status)

    async def get_status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _problem(401, "unauthorised", "a valid bearer token for this agency is required")
        message_id = request.match_info["message_id"]
        record = await self.store.message(message_id)
        if record is None or record.sender != self.intake.agency:
            return _problem(404, "not-found", f"no message {message_id} sent by this agency")
        timeline = await self.store.timeline(message_id)
        return web.json_response(
            {
                "message_id": record.message_id,
                "correlation_id": record.correlation_id,
                "message_type": record.message_type,
                "recipients": list(record.recipients),
                "state": record.state.value,
                "timeline": [
                    {"state": e.state.value, "at": e.at.isoformat(), "reason": e.reason}
                    for e in timeline
                ],
            }
        )
