"""Files that travel with a request to an e-mail-only agency go out as attachments of its mail.

Real SMTP over sockets: the intake mails through a STARTTLS relay on a free
port; the hub sends through its edge on a real exchange. What the agency's
officer relies on: each file is in the mail under its name and media type,
byte-identical (inside the encryption for a `pgp` domain). What the sender
relies on: files too large to mail are never dropped silently; the request
is not mailed and the sender gets a negative receipt naming the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

import aiosmtpd.smtp
import pytest
import pytest_asyncio

from gateway.broker.vhost import BrokerAdmin
from gateway.config.intake_config import Relay
from gateway.core.resources import schemas_dir
from gateway.demo.mail import MailServer, mail_server
from gateway.infra import tls
from gateway.intake.mailer import Mailer, MailTooLarge
from gateway.intake.pgp import Keyring
from gateway.intake.replies import text_entity
from gateway.intake.service import RunningIntake
from gateway.services.edge import Delivered, Submission
from gateway.services.transfer_sender import AttachmentFile
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.intake_harness import HOST, People, intake_on, made_people

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
PROBATION = "pdu@probation.demo.example"  # e-mail-only, TLS
CSC = "front.door@csc.demo.example"  # e-mail-only, PGP


@pytest.fixture(scope="module")
def people() -> Iterator[People]:
    with made_people() as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    async with running_exchange(
        broker_admin, AMQP_URL, tmp_path_factory.mktemp("mailed-files")
    ) as running:
        await running.edge("hub", takes_attachments=True)
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def relay(exchange: Exchange) -> AsyncIterator[MailServer]:
    assert exchange.config.intake is not None
    async with mail_server(exchange.config.intake.tls_cert, exchange.config.intake.tls_key) as sink:
        yield sink


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def intake(
    exchange: Exchange, people: People, relay: MailServer
) -> AsyncIterator[tuple[RunningIntake, str]]:
    async with intake_on(exchange, people, relay.port) as running:
        yield running


def mails_about(relay: MailServer, address: str, message_id: str) -> list[bytes]:
    return [
        raw
        for sender, to, raw in relay.mails
        if sender == f"mash-intake@{HOST}" and to == [address] and message_id.encode() in raw
    ]


def attachments(entity: bytes) -> dict[str, tuple[str, bytes]]:
    """Each attachment of a MIME entity: file name -> (media type, decoded bytes)."""
    message = BytesParser(policy=default).parsebytes(entity)
    assert isinstance(message, EmailMessage)
    found: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_attachments():
        name = part.get_filename()
        data = part.get_payload(decode=True)
        assert name is not None and isinstance(data, bytes)
        found[name] = (part.get_content_type(), data)
    return found


def receipts_for(exchange: Exchange, message_id: str) -> list[Delivered]:
    return [
        m
        for m in exchange.inboxes["hub"].of_type("DeliveryReceipt")
        if m.header.fields.in_reply_to == message_id
    ]


def made_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


async def test_a_request_s_files_are_attachments_of_its_mail(
    exchange: Exchange, intake: tuple[RunningIntake, str], relay: MailServer, tmp_path: Path
) -> None:
    letter = made_file(tmp_path, "discharge letter.pdf", 300_000)
    body_map = made_file(tmp_path, "body-map (1).png", 40_000)
    files = (AttachmentFile(letter), AttachmentFile(body_map, media_type="image/png"))
    sent = await exchange.edges["hub"].submit(
        Submission(REQUEST, ("probation",), attachments=files)
    )
    await eventually(lambda: _true(mails_about(relay, PROBATION, sent.message_id)), timeout=120)
    (raw,) = mails_about(relay, PROBATION, sent.message_id)
    found = attachments(raw)
    assert found["discharge letter.pdf"] == ("application/pdf", letter.read_bytes())
    assert found["body-map (1).png"] == ("image/png", body_map.read_bytes())
    assert found["request.xml"][0] == "application/xml"
    await eventually(lambda: _true(receipts_for(exchange, sent.message_id)), timeout=120)
    (receipt,) = receipts_for(exchange, sent.message_id)
    assert receipt.header.fields.receipt_outcome == "positive"
    assert hashlib.sha256(letter.read_bytes()).hexdigest().encode() in receipt.payload


async def test_for_a_pgp_agency_the_files_are_inside_the_encryption(
    exchange: Exchange,
    intake: tuple[RunningIntake, str],
    relay: MailServer,
    people: People,
    tmp_path: Path,
) -> None:
    scan = made_file(tmp_path, "referral scan.pdf", 200_000)
    sent = await exchange.edges["hub"].submit(
        Submission(REQUEST, ("csc",), attachments=(AttachmentFile(scan),))
    )
    await eventually(lambda: _true(mails_about(relay, CSC, sent.message_id)), timeout=120)
    (raw,) = mails_about(relay, CSC, sent.message_id)
    assert b"multipart/encrypted" in raw and b"referral scan" not in raw
    plaintext = people.gpg.decrypt(raw.split(b"application/octet-stream", 1)[1]).data
    found = attachments(plaintext)
    assert found["referral scan.pdf"] == ("application/pdf", scan.read_bytes())
    assert "request.xml" in found


@pytest.mark.parametrize(
    "size",
    [
        12 * 1024 * 1024,  # refused from its size: base64 alone is over 10 MiB
        7_860_000,  # base64 alone fits; with its line breaks the built mail does not
    ],
)
async def test_files_too_large_to_mail_are_refused_to_the_sender_naming_the_limit(
    exchange: Exchange,
    intake: tuple[RunningIntake, str],
    relay: MailServer,
    tmp_path: Path,
    size: int,
) -> None:
    running, _ = intake
    assert running.config.max_message_bytes == 10 * 1024 * 1024
    video = made_file(tmp_path, "interview.mp4", size)
    sent = await exchange.edges["hub"].submit(
        Submission(REQUEST, ("probation",), attachments=(AttachmentFile(video),))
    )
    await eventually(lambda: _true(receipts_for(exchange, sent.message_id)), timeout=120)
    (receipt,) = receipts_for(exchange, sent.message_id)
    fields = receipt.header.fields
    assert (fields.receipt_outcome, fields.receipt_check) == ("negative", "handler")
    assert b"at most 10485760 ([intake] max_message_bytes)" in receipt.payload
    assert b"send the files by another channel" in receipt.payload
    assert not mails_about(relay, PROBATION, sent.message_id)


async def test_a_mail_over_the_relay_s_advertised_size_is_sent_to_nobody(
    exchange: Exchange, tmp_path: Path
) -> None:
    """The relay's own limit (EHLO SIZE) counts too, before any recipient is sent the mail."""
    assert exchange.config.intake is not None
    intake = exchange.config.intake
    sink = MailServer()
    context = tls.server_context(intake.tls_cert, intake.tls_key)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: aiosmtpd.smtp.SMTP(
            sink, tls_context=context, require_starttls=True, data_size_limit=50_000
        ),
        "127.0.0.1",
        0,
    )
    try:
        port = listener.sockets[0].getsockname()[1]
        relay = Relay("127.0.0.1", port, True, f"mash-intake@{HOST}", intake.tls_cert)
        (tmp_path / "gnupg").mkdir(mode=0o700)  # unused: these mails are not encrypted
        mailer = Mailer(relay, HOST, Keyring(tmp_path / "gnupg"), max_bytes=10 * 1024 * 1024)
        await mailer.send_each(("a@x.example",), "small", text_entity("fits"), ())
        assert len(sink.mails) == 1
        big = text_entity("x" * 60_000)
        with pytest.raises(MailTooLarge, match="the relay takes at most 50000"):
            await mailer.send_each(("a@x.example", "b@x.example"), "big", big, ())
        assert len(sink.mails) == 1
    finally:
        listener.close()
        await listener.wait_closed()


async def _true(value: object) -> bool:
    return bool(value)
