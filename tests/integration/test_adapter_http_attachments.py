"""HTTP adapters carry files: a streamed form in, a streamed form out to the webhook.

Inbound: the document part and file parts reach the hub whole (a 200+ MiB
file among them), a repeat under the same Idempotency-Key sends nothing and
another file under it is a 409, limits refuse before or as the bytes come,
and the spool is left empty. Outbound: a message with files is one
multipart/form-data POST whose parts carry each file's name, type and
signed digest.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters import http_tokens
from adapters.profile import BUILTIN
from gateway.broker.vhost import BrokerAdmin
from gateway.core.attachments import AttachmentLimits
from gateway.core.resources import schemas_dir
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.tracking import message_report
from gateway.services.transfer_sender import AttachmentFile
from gateway.store.sqlite import SqliteStore
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.test_adapter_http import free_port, http_adapter

pytestmark = pytest.mark.integration

EXPORT = (BUILTIN / "csc" / "samples" / "case-export-information-return.xml").read_bytes()
REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
CHUNK = 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Hub:
    """The hub's system: each message, and its files as (name, media type, size, SHA-256)."""

    messages: list[Delivered] = field(default_factory=list)
    files: dict[str, list[tuple[str, str, int, str]]] = field(default_factory=dict)

    async def __call__(self, delivered: Delivered) -> None:
        self.files[delivered.header.fields.message_id] = [
            (a.facts.file_name, a.facts.media_type, a.path.stat().st_size, sha256_of(a.path))
            for a in delivered.attachments
        ]
        self.messages.append(delivered)


@dataclass
class FormWebhook:
    """The case system's end: streams each form's file parts to disk, keeps what they said."""

    folder: Path
    port: int = field(default_factory=free_port)
    received: list[tuple[dict[str, str], bytes, list[dict[str, str]]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if request.content_type != "multipart/form-data":
            self.received.append((headers, await request.read(), []))
            return web.Response(status=204)
        reader = await request.multipart()
        document = await reader.next()
        assert isinstance(document, aiohttp.BodyPartReader) and document.name == "document"
        body = await document.read()
        files = []
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            digest, size = hashlib.sha256(), 0
            while chunk := await part.read_chunk(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            files.append(
                {
                    "name": part.name or "",
                    "filename": part.filename or "",
                    "type": part.headers["Content-Type"],
                    "digest": part.headers["Content-Digest"],
                    "sha256": digest.hexdigest(),
                    "size": str(size),
                }
            )
        self.received.append((headers, bytes(body), files))
        return web.Response(status=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mash"


@dataclass
class Csc:
    url: str
    token: str
    uploads: Path


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


async def hub_taking_files(exchange: Exchange) -> Hub:
    store = SqliteStore(str(exchange.tmp / "edge-hub.db"))
    await store.open()
    edge = Edge(exchange.config, "hub", store)
    await edge.__aenter__()
    exchange.edges["hub"] = edge
    hub = Hub()
    await edge.consume(hub, takes_attachments=True)
    return hub


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[FormWebhook]:
    hook = FormWebhook(tmp_path / "received")
    app = web.Application()
    app.router.add_post("/mash", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook.port).start()
    yield hook
    await runner.cleanup()


@asynccontextmanager
async def csc_adapter(
    exchange: Exchange,
    webhook: FormWebhook,
    limits: AttachmentLimits | None = None,
    more: str = "",
) -> AsyncIterator[Csc]:
    port = free_port()
    config = add_adapter(exchange, http_adapter(port, webhook.url) + more)
    if limits is not None:
        config = dataclasses.replace(config, limits=limits)
    token = http_tokens.issue(config.private_keys_dir, "csc")
    async with running_adapter(config, "csc", exchange.tmp / "ledger.db", exchange.router_store):
        uploads = config.base_dir / "state" / "uploads" / "csc"
        yield Csc(f"http://127.0.0.1:{port}", token, uploads)


async def streamed(path: Path) -> AsyncIterator[bytes]:
    """The file's bytes with no size known beforehand: the form goes chunked."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def form(
    files: list[tuple[str, Path | bytes | AsyncIterator[bytes], str | None]],
) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(EXPORT, {"Content-Type": "application/xml"})
    part.set_content_disposition("form-data", name="document")
    for name, content, media_type in files:
        body = content.open("rb") if isinstance(content, Path) else content
        headers = {"Content-Type": media_type} if media_type else {}
        part = writer.append(body, headers)
        part.set_content_disposition("form-data", name="attachment", filename=name)
    return writer


async def post_form(
    csc: Csc, writer: aiohttp.MultipartWriter, key: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {csc.token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{csc.url}/messages", data=writer, headers=headers) as reply,
    ):
        return reply.status, await reply.json()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            out.write(os.urandom(min(left, CHUNK)))
            left -= min(left, CHUNK)
    return path


async def test_a_form_with_files_reaches_the_hub_whole_and_a_repeat_sends_nothing(
    exchange: Exchange, webhook: FormWebhook, tmp_path: Path
) -> None:
    hub = await hub_taking_files(exchange)
    letter = random_file(tmp_path / "letter.pdf", 300_000)
    chronology = b"2026-11-02 school reports bruising\n"
    files = [("letter.pdf", letter, None), ("chronology.txt", chronology, "text/plain")]
    async with csc_adapter(exchange, webhook) as csc:
        status, answer = await post_form(csc, form(files), key="return-with-files-1")
        assert status == 202, answer
        (message_id,) = answer["message_ids"]  # type: ignore[misc]
        again = await post_form(csc, form(files), key="return-with-files-1")
        assert again == (200, answer)
        other = [("letter.pdf", letter, None), ("chronology.txt", b"other", "text/plain")]
        status, problem = await post_form(csc, form(other), key="return-with-files-1")
        assert (status, problem["error"]) == (409, "idempotency-key-reused")
        assert list(csc.uploads.iterdir()) == []  # every request's spool removed

    async def arrived() -> bool:
        return message_id in hub.files

    await eventually(arrived, timeout=30)
    assert hub.files[message_id] == [
        ("letter.pdf", "application/pdf", 300_000, sha256_of(letter)),
        (
            "chronology.txt",
            "text/plain",
            len(chronology),
            hashlib.sha256(chronology).hexdigest(),
        ),
    ]
    assert len(hub.messages) == 1
    tracked = await message_report(exchange.router_store, message_id, "router.db")
    assert "files:    2 (" in tracked  # count and sealed size from the signed header
    assert "letter.pdf" not in tracked  # never a name: the router cannot read one


async def test_limits_and_bad_forms_are_refused_before_or_as_the_bytes_arrive(
    exchange: Exchange, webhook: FormWebhook, tmp_path: Path
) -> None:
    limits = AttachmentLimits(
        max_attachment_bytes=CHUNK, max_total_bytes=CHUNK + CHUNK // 2, max_attachments=2
    )
    big = random_file(tmp_path / "scan.png", 3 * CHUNK)
    small = b"x" * 1000
    async with csc_adapter(exchange, webhook, limits) as csc:
        status, problem = await post_form(csc, form([("scan.png", big, None)]))
        assert (status, problem["error"]) == (413, "limit")  # from its Content-Length alone
        assert "max_total_bytes" in str(problem["reason"])
        status, problem = await post_form(csc, form([("scan.png", streamed(big), None)]))
        assert (status, problem["error"]) == (413, "limit")  # chunked: stopped as it passed
        assert "max_attachment_bytes" in str(problem["reason"])
        three = [(f"note-{n}.txt", small, "text/plain") for n in range(3)]
        status, problem = await post_form(csc, form(three))
        assert (status, problem["error"]) == (413, "limit")
        assert "max_attachments" in str(problem["reason"])
        two = [("a.bin", b"a" * (CHUNK - 10), None), ("b.bin", b"b" * (CHUNK - 10), None)]
        status, problem = await post_form(csc, form(two))
        assert (status, problem["error"]) == (413, "limit")
        assert "max_total_bytes" in str(problem["reason"])
        status, problem = await post_form(csc, form([("..", small, None)]))
        assert (status, problem["error"]) == (422, "attachment")
        status, problem = await post_form(csc, form([("../../etc/cron.d/x", small, None)]))
        assert (status, problem["error"]) == (422, "attachment")
        control = form([("placeholder", small, None)])
        control._parts[1][0].headers["Content-Disposition"] = (  # RFC 5987: a real tab
            "form-data; name=\"attachment\"; filename*=utf-8''tab%09here.txt"
        )
        status, problem = await post_form(csc, control)
        assert (status, problem["error"]) == (422, "attachment")
        assert "control character" in str(problem["reason"])
        no_document = aiohttp.MultipartWriter("form-data")
        no_document.append(small).set_content_disposition(
            "form-data", name="attachment", filename="a.txt"
        )
        status, problem = await post_form(csc, no_document)
        assert (status, problem["error"]) == (400, "bad-form")

        # The head alone says it is too large: refused before a byte of body is sent.
        host, port = csc.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                "POST /messages HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {csc.token}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: {10 * 1024**4}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413")
        writer.close()
        assert list(csc.uploads.iterdir()) == []


async def test_a_200_mib_upload_streams_to_the_hub_byte_identical(
    exchange: Exchange, webhook: FormWebhook, tmp_path: Path
) -> None:
    hub = await hub_taking_files(exchange)
    video = random_file(tmp_path / "interview.mp4", 200 * CHUNK + 7)
    async with csc_adapter(exchange, webhook) as csc:
        status, answer = await post_form(csc, form([("interview.mp4", video, "video/mp4")]))
        assert status == 202, answer
        (message_id,) = answer["message_ids"]  # type: ignore[misc]

        async def arrived() -> bool:
            return message_id in hub.files

        await eventually(arrived, timeout=600)
        assert list(csc.uploads.iterdir()) == []
    assert hub.files[message_id] == [
        ("interview.mp4", "video/mp4", 200 * CHUNK + 7, sha256_of(video))
    ]


async def test_the_webhook_gets_a_message_and_its_files_as_one_streamed_form(
    exchange: Exchange, webhook: FormWebhook, tmp_path: Path
) -> None:
    await exchange.edge("hub")
    scan = random_file(tmp_path / "body-map.png", 2 * CHUNK + 3)
    async with csc_adapter(exchange, webhook):
        hub = exchange.edges["hub"]
        request = await hub.submit(
            Submission(
                REQUEST,
                ("csc",),
                correlation_id="CASE-9",
                attachments=(AttachmentFile(scan, description="body map"),),
            )
        )

        async def posted() -> bool:
            return bool(webhook.received)

        await eventually(posted, timeout=30)
    headers, document, files = webhook.received[0]
    assert headers["idempotency-key"] == headers["x-message-id"] == request.message_id
    assert headers["x-attachment-count"] == "1"
    assert b"<Filename>body-map.png</Filename>" in document
    digest = sha256_of(scan)
    assert files == [
        {
            "name": "attachment",
            "filename": "body-map.png",
            "type": "image/png",
            "digest": f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode()}:",
            "sha256": digest,
            "size": str(2 * CHUNK + 3),
        }
    ]


async def test_a_form_that_stalls_is_cut_off_with_a_408(
    exchange: Exchange, webhook: FormWebhook
) -> None:
    async with csc_adapter(exchange, webhook, more="body_seconds = 0.5\n") as csc:
        host, port = csc.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                "POST /messages HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {csc.token}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        start = b'--b\r\nContent-Disposition: form-data; name="document"\r\n\r\n<a'
        writer.write(b"%x\r\n%s\r\n" % (len(start), start))
        await writer.drain()  # and nothing more: a client that stalls mid-part
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        assert head.startswith(b"HTTP/1.1 408")
        writer.close()
        assert list(csc.uploads.iterdir()) == []
