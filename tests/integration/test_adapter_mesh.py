"""The health adapter over MESH, against a real mesh-sandbox server: CP-IS style notifications in,
requests out, chunked both ways; acknowledged only once durable, never sent twice; receipted only
once the trust's mailbox has downloaded a message; non-delivery reports become negative receipts;
documents with 100 MB of files travel in MESH's own chunks both ways."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mesh_client import MeshClient
from structlog.testing import capture_logs

from adapters.ledger import Ledger
from adapters.profile import BUILTIN
from adapters.transports import mesh
from adapters.transports.mesh import secret_files
from gateway.broker.vhost import BrokerAdmin
from gateway.config.area_config import AreaConfig
from gateway.core.attachments import AttachmentLimits
from gateway.core.resources import schemas_dir
from gateway.infra.clock import utc_now
from gateway.services.edge import Delivered, Submission
from gateway.services.transfer_sender import AttachmentFile
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.mesh_sandbox import (
    ADAPTER_MAILBOX,
    AGENCY_MAILBOX,
    PASSWORD,
    SHARED_KEY,
    MeshSandbox,
    mesh_sandbox,
)

pytestmark = pytest.mark.integration
__all__ = ["mesh_sandbox"]  # the session fixture, imported for pytest

NOTIFICATION = (BUILTIN / "health" / "samples" / "cpis-attendance.xml").read_bytes()
REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
CHUNK = 400  # small chunks, so every message here is chunked


def mesh_adapter(url: str, chunk: int = CHUNK) -> str:
    return (
        '[[adapters]]\nagency = "health"\nprofile = "health"\nrecipients = ["hub"]\n'
        f'transport = "mesh"\n[adapters.mesh]\nurl = "{url}"\n'
        f'mailbox = "{ADAPTER_MAILBOX}"\nrecipient = "{AGENCY_MAILBOX}"\n'
        'workflow_id = "MASH_GATEWAY"\n'
        'workflows = { InformationRequest = "MASH_INFO_REQUEST" }\n'
        f'root = "systems/health"\npoll_seconds = 0.1\nmax_chunk_size = {chunk}\n'
        "track_seconds = 0.2\n"
    )


def client(sandbox: MeshSandbox, mailbox: str, chunk: int = CHUNK) -> MeshClient:
    return MeshClient(
        sandbox.url, mailbox, PASSWORD, shared_key=SHARED_KEY.encode(), max_chunk_size=chunk
    )


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        await running.edge("hub")
        yield running


@pytest.fixture
def health_system(mesh_sandbox: MeshSandbox) -> Iterator[MeshClient]:
    """The trust's own system, on its mailbox; both mailboxes start empty."""
    mesh_sandbox.reset(ADAPTER_MAILBOX)
    mesh_sandbox.reset(AGENCY_MAILBOX)
    with client(mesh_sandbox, AGENCY_MAILBOX) as system:
        yield system


@pytest.fixture
def config(exchange: Exchange, mesh_sandbox: MeshSandbox) -> AreaConfig:
    return with_secrets(add_adapter(exchange, mesh_adapter(mesh_sandbox.url)))


def with_secrets(config: AreaConfig) -> AreaConfig:
    for path, secret in zip(
        secret_files(config.private_keys_dir, "health"), (PASSWORD, SHARED_KEY), strict=True
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret)
        os.chmod(path, 0o600)
    return config


def referrals(exchange: Exchange) -> list[bytes]:
    return [m.payload for m in exchange.inboxes["hub"].of_type("Referral")]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def _some(items: Sequence[object]) -> bool:
    return bool(items)


async def _exists(path: Path) -> bool:
    return path.exists()


async def _gone(path: Path) -> bool:
    return not path.exists()


async def arrived(system: MeshClient) -> bool:
    return bool(await asyncio.to_thread(system.list_messages))


def receipts(exchange: Exchange) -> list[Delivered]:
    return exchange.inboxes["hub"].of_type("DeliveryReceipt")


async def state(exchange: Exchange, message_id: str) -> str:
    record = await exchange.router_store.message(message_id)
    assert record is not None
    return record.state.value


async def adapter_mailbox_empty(sandbox: MeshSandbox) -> bool:
    with client(sandbox, ADAPTER_MAILBOX) as adapter:
        return bool(await asyncio.to_thread(adapter.list_messages) == [])


async def test_chunked_notification_reaches_the_hub_and_is_acknowledged(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    root = config.base_dir / "systems" / "health"
    mesh_id = health_system.send_message(
        ADAPTER_MAILBOX, NOTIFICATION, workflow_id="CPIS_NOTIFICATION"
    )
    assert len(NOTIFICATION) > 2 * CHUNK
    async with running_adapter(config, "health", tmp_path / "ledger.db"):
        await eventually(lambda: _some(referrals(exchange)))
        await eventually(lambda: adapter_mailbox_empty(mesh_sandbox))
    (referral,) = referrals(exchange)
    assert b'<Identifier scheme="nhs-number">9434765870</Identifier>' in referral
    assert b"<Source>3E</Source>" in referral and b"<Rag>Red</Rag>" in referral
    assert names(root / "archive") == [f"{mesh_id}.dat", f"{mesh_id}.dat.sent"]
    assert (root / "archive" / f"{mesh_id}.dat").read_bytes() == NOTIFICATION
    sent = exchange.inboxes["hub"].of_type("Referral")[0].header.fields.message_id
    assert (root / "archive" / f"{mesh_id}.dat.sent").read_text().split() == [sent]


async def test_more_messages_than_are_in_hand_each_reach_the_hub_once(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    """Polls list again while messages are in hand: each message reaches the hub once, each is
    acknowledged, and the trust gets each one's receipt."""
    count = 2 * mesh.IN_HAND + 3
    mesh_ids = {
        health_system.send_message(ADAPTER_MAILBOX, NOTIFICATION, workflow_id="CPIS")
        for _ in range(count)
    }
    async with running_adapter(config, "health", tmp_path / "ledger.db"):

        async def all_referred() -> bool:
            return len(referrals(exchange)) >= count

        async def all_receipted() -> bool:
            return len(await asyncio.to_thread(health_system.list_messages)) >= count

        await eventually(all_referred, timeout=60)
        await eventually(lambda: adapter_mailbox_empty(mesh_sandbox))
        await eventually(all_receipted, timeout=60)
    sent = {m.header.fields.message_id for m in exchange.inboxes["hub"].of_type("Referral")}
    assert len(sent) == len(referrals(exchange)) == count
    archive = config.base_dir / "systems" / "health" / "archive"
    notes = {n.removesuffix(".dat.sent"): n for n in names(archive) if n.endswith(".sent")}
    assert set(notes) == mesh_ids
    assert {(archive / n).read_text().strip() for n in notes.values()} == sent


async def test_a_request_is_accepted_by_mesh_then_receipted_once_the_trust_downloads_it(
    exchange: Exchange, config: AreaConfig, health_system: MeshClient, tmp_path: Path
) -> None:
    hub = exchange.edges["hub"]
    pending = config.base_dir / "systems" / "health" / "pending"
    async with running_adapter(config, "health", tmp_path / "ledger.db"):
        sent = await hub.submit(Submission(REQUEST, ("health",), correlation_id="CASE-3"))
        await eventually(lambda: arrived(health_system))
        # Accepted by MESH: its own state, kept until the trust's mailbox downloads it.
        await eventually(lambda: _exists(pending / f"{sent.message_id}.json"))
        await asyncio.sleep(1.0)  # several tracking rounds: MESH says "accepted" only
        assert receipts(exchange) == []
        assert await state(exchange, sent.message_id) == "routed"
        owed = await exchange.router_store.case_deadlines("CASE-3")
        assert ("delivery", "health", True) in {(d.kind.value, d.debtor, d.is_open) for d in owed}

        (mesh_id,) = health_system.list_messages()
        message = health_system.retrieve_message(mesh_id)
        try:
            assert message.read() == REQUEST
            assert message.workflow_id == "MASH_INFO_REQUEST"
            assert (message.local_id, message.subject) == (sent.message_id, "InformationRequest")
            assert message.mex_header("total-chunks") != "1"
        finally:
            message.close()  # type: ignore[no-untyped-call]
        health_system.acknowledge_message(mesh_id)  # downloaded: MESH tracking says so
        await eventually(lambda: _some(receipts(exchange)))
    (receipt,) = receipts(exchange)
    assert (receipt.header.fields.in_reply_to, receipt.header.fields.receipt_outcome) == (
        sent.message_id,
        "positive",
    )
    assert await state(exchange, sent.message_id) == "delivered"
    assert not (pending / f"{sent.message_id}.json").exists()


async def test_a_non_delivery_report_is_a_negative_receipt_to_the_sender(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    """MESH reports the trust never collected it: the hub is told, the message is rejected."""
    hub = exchange.edges["hub"]
    root = config.base_dir / "systems" / "health"
    async with running_adapter(config, "health", tmp_path / "ledger.db"):
        sent = await hub.submit(Submission(REQUEST, ("health",), correlation_id="CASE-9"))
        await eventually(lambda: _exists(root / "pending" / f"{sent.message_id}.json"))
        (mesh_id,) = health_system.list_messages()
        mesh_sandbox.report(
            ADAPTER_MAILBOX,
            code="14",
            description="Message not collected by recipient after 5 days",
            workflow_id="MASH_INFO_REQUEST",
            local_id=sent.message_id,
            linked_message_id=mesh_id,
        )
        await eventually(lambda: _some(receipts(exchange)))
        await eventually(lambda: adapter_mailbox_empty(mesh_sandbox))  # the report: read
    (receipt,) = receipts(exchange)
    fields = receipt.header.fields
    assert (fields.in_reply_to, fields.receipt_outcome, fields.receipt_check) == (
        sent.message_id,
        "negative",
        "handler",
    )
    assert f"MESH report for message {mesh_id}".encode() in receipt.payload
    assert b"status 14 Message not collected by recipient after 5 days" in receipt.payload
    assert await state(exchange, sent.message_id) == "rejected"
    ended = await exchange.router_store.case_deadlines("CASE-9")
    assert ended and all(not d.is_open for d in ended)
    assert not (root / "pending" / f"{sent.message_id}.json").exists()
    (note,) = [n for n in names(root / "archive") if n.endswith(".report")]
    assert (root / "archive" / note).read_text().endswith("negative receipt sent to hub\n")
    assert names(root / "error") == []


async def test_refused_messages_are_not_acknowledged_and_unknown_reports_end_in_error(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    """A refused message stays unacknowledged (the trust's tracking never shows success) and is
    not downloaded again; MESH expires it and reports to the trust."""
    root = config.base_dir / "systems" / "health"
    unmappable = NOTIFICATION.replace(b'category="INJURY"', b'category="UNKNOWN"')
    bad_id = health_system.send_message(ADAPTER_MAILBOX, unmappable, workflow_id="CPIS")
    mesh_sandbox.report(
        ADAPTER_MAILBOX,
        code="14",
        description="Message not collected by recipient after 5 days",
        workflow_id="MASH_INFO_REQUEST",
        local_id="11111111-2222-4333-8444-555555555555",
        linked_message_id="20261118000000000000_ABCDEF",
    )
    with capture_logs() as events:
        async with running_adapter(config, "health", tmp_path / "ledger.db"):

            async def filed() -> bool:
                return len([n for n in names(root / "error") if n.endswith(".reason")]) == 2

            await eventually(filed)
            await asyncio.sleep(1.0)  # ten more polls
            with client(mesh_sandbox, ADAPTER_MAILBOX) as adapter:
                assert adapter.list_messages() == [bad_id]  # the report was acknowledged
    assert health_system.track_message(bad_id)["status"] == "accepted"  # never "acknowledged"
    refusals = [e for e in events if e["event"] == "mesh.refused" and e["mesh_id"] == bad_id]
    assert len(refusals) == 1  # not downloaded again
    reasons = {
        n.removesuffix(".dat.reason"): (root / "error" / n).read_text()
        for n in names(root / "error")
        if n.endswith(".reason")
    }
    line = (
        NOTIFICATION.decode()
        .splitlines()
        .index(
            '  <Concern category="INJURY">Wrist fracture; the explanation given does not fit the '
            "injury.</Concern>"
        )
    )
    assert reasons.pop(bad_id) == (
        f"MESH message {bad_id}: line {line + 1}: Concern/@category: unknown category UNKNOWN\n"
    )
    (report,) = reasons.values()
    assert report == (
        "MESH report for message 20261118000000000000_ABCDEF "
        "(our message 11111111-2222-4333-8444-555555555555): "
        "status 14 Message not collected by recipient after 5 days\n"
    )
    assert referrals(exchange) == []


async def test_the_handshake_runs_at_start_and_then_daily(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each handshake is a real one against the sandbox; the test only counts them."""
    monkeypatch.setattr(mesh, "HANDSHAKE_EVERY_S", 0.3)  # a "day" of 0.3 s
    real, answers = MeshClient.handshake, []

    def counted(self: MeshClient) -> bytes:
        answer: bytes = real(self)  # type: ignore[no-untyped-call]
        answers.append(answer)
        return answer

    monkeypatch.setattr(MeshClient, "handshake", counted)
    async with running_adapter(config, "health", tmp_path / "ledger.db"):
        assert len(answers) == 1  # at start, before the adapter is ready

        async def three() -> bool:
            return len(answers) >= 3

        await eventually(three)
    assert set(answers) == {b"hello"}


async def test_the_archive_is_pruned_after_archive_days(
    exchange: Exchange, config: AreaConfig, health_system: MeshClient, tmp_path: Path
) -> None:
    archive = config.base_dir / "systems" / "health" / "archive"
    archive.mkdir(parents=True)
    old, recent = archive / "OLD.dat", archive / "RECENT.dat"
    for path in (old, recent, archive / "OLD.dat.sent"):
        path.write_bytes(b"x")
    month_ago = utc_now().timestamp() - 31 * 86400
    for path in (old, archive / "OLD.dat.sent"):
        os.utime(path, (month_ago, month_ago))
    async with running_adapter(config, "health", tmp_path / "ledger.db"):
        await eventually(lambda: _gone(old))
    assert names(archive) == ["RECENT.dat"]


async def test_a_message_sent_but_not_acknowledged_before_a_crash_is_not_sent_again(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    """The ledger holds its message id, MESH still holds it: acknowledge, do not resend."""
    mesh_id = health_system.send_message(ADAPTER_MAILBOX, NOTIFICATION, workflow_id="CPIS")
    ledger = Ledger(tmp_path / "ledger.db")
    digest = hashlib.sha256(NOTIFICATION).hexdigest()
    ledger.record("health", f"mesh:{mesh_id}", 0, digest, "MESH", "sent-before-crash", utc_now())
    ledger.close()
    fresh = health_system.send_message(ADAPTER_MAILBOX, NOTIFICATION, workflow_id="CPIS")
    async with running_adapter(config, "health", tmp_path / "ledger.db"):
        await eventually(lambda: adapter_mailbox_empty(mesh_sandbox))
        await eventually(lambda: _some(referrals(exchange)))
        await asyncio.sleep(0.5)
    assert len(referrals(exchange)) == 1  # only the fresh one
    root = config.base_dir / "systems" / "health"
    resumed = (root / "archive" / f"{mesh_id}.dat.sent").read_text().split()
    assert resumed == ["sent-before-crash"]
    assert (root / "archive" / f"{fresh}.dat.sent").exists()


BIG = 100 * 1024 * 1024  # MESH carries it in ten chunks of BIG_CHUNK
BIG_CHUNK = 10 * 1000 * 1000


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes in ``path``, written a MiB at a time; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for start in range(0, size, 1 << 20):
            block = os.urandom(min(1 << 20, size - start))
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def digest_of_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


@dataclass
class WithFiles:
    """The hub's system: each message, and each of its files' name, size and SHA-256."""

    received: list[tuple[Delivered, list[tuple[str, int, str]]]] = field(default_factory=list)

    async def handler(self, delivered: Delivered) -> None:
        files = [
            (a.facts.file_name, *await asyncio.to_thread(digest_of_file, a.path))
            for a in delivered.attachments
        ]
        self.received.append((delivered, files))

    def of_type(self, message_type: str) -> list[tuple[Delivered, list[tuple[str, int, str]]]]:
        return [r for r in self.received if r[0].header.fields.message_type == message_type]


@pytest.fixture
async def files_exchange(
    broker_admin: BrokerAdmin, tmp_path: Path
) -> AsyncIterator[tuple[Exchange, WithFiles]]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        hub, system = await running.edge("hub", consume=False), WithFiles()
        await hub.consume(system.handler, takes_attachments=True)
        yield running, system


@pytest.fixture
def big_config(files_exchange: tuple[Exchange, WithFiles], mesh_sandbox: MeshSandbox) -> AreaConfig:
    exchange, _ = files_exchange
    return with_secrets(add_adapter(exchange, mesh_adapter(mesh_sandbox.url, BIG_CHUNK)))


async def test_a_notification_with_100_mb_of_files_reaches_the_hub_in_mesh_chunks(
    files_exchange: tuple[Exchange, WithFiles],
    big_config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    _, hub = files_exchange
    scan = tmp_path / "scan.bin"
    digest = random_file(scan, BIG)
    upload = tmp_path / "notification.zip"
    with zipfile.ZipFile(upload, "w", allowZip64=True) as archive:
        archive.writestr("notification.xml", NOTIFICATION)
        archive.write(scan, "attachments/body-map.bin")
    with client(mesh_sandbox, AGENCY_MAILBOX, BIG_CHUNK) as trust, upload.open("rb") as data:
        mesh_id = trust.send_message(
            ADAPTER_MAILBOX,
            data,
            workflow_id="CPIS_NOTIFICATION",
            content_type="application/zip",
            filename="notification.zip",
        )
    async with running_adapter(big_config, "health", tmp_path / "ledger.db"):
        await eventually(lambda: _some(hub.of_type("Referral")), timeout=300)
        await eventually(lambda: adapter_mailbox_empty(mesh_sandbox))
    ((referral, files),) = hub.of_type("Referral")
    assert files == [("body-map.bin", BIG, digest)]
    assert b"<Filename>body-map.bin</Filename>" in referral.payload
    assert f"<Sha256>{digest}</Sha256>".encode() in referral.payload
    root = big_config.base_dir / "systems" / "health"
    assert names(root / "archive") == [f"{mesh_id}.dat", f"{mesh_id}.dat.sent"]
    assert names(root / "processing") == []


async def test_a_request_with_100_mb_of_files_reaches_the_trust_in_mesh_chunks(
    files_exchange: tuple[Exchange, WithFiles],
    big_config: AreaConfig,
    health_system: MeshClient,
    mesh_sandbox: MeshSandbox,
    tmp_path: Path,
) -> None:
    exchange, hub_system = files_exchange
    letter = tmp_path / "chronology.pdf"
    digest = random_file(letter, BIG)
    hub = exchange.edges["hub"]
    async with running_adapter(big_config, "health", tmp_path / "ledger.db"):
        sent = await hub.submit(
            Submission(REQUEST, ("health",), attachments=(AttachmentFile(letter),))
        )
        await eventually(lambda: arrived(health_system), timeout=300)
        with client(mesh_sandbox, AGENCY_MAILBOX, BIG_CHUNK) as trust:
            (mesh_id,) = trust.list_messages()
            message = trust.retrieve_message(mesh_id)
            received = tmp_path / "received.zip"
            try:
                assert message.mex_header("total-chunks") == "11"  # 100 MiB and the ZIP's bytes
                assert (message.filename, message.local_id) == (
                    f"{sent.message_id}.zip",
                    sent.message_id,
                )
                with received.open("wb") as out:
                    while block := message.read(1 << 20):
                        out.write(block)
            finally:
                message.close()
            with zipfile.ZipFile(received) as archive:
                assert archive.namelist() == [  # the document first, as written
                    f"{sent.message_id}.xml",
                    "attachments/chronology.pdf",
                ]
                document = archive.read(f"{sent.message_id}.xml")
                with archive.open("attachments/chronology.pdf") as data:
                    copied = tmp_path / "copied.pdf"
                    with copied.open("wb") as out:
                        shutil.copyfileobj(data, out, 1 << 20)
            trust.acknowledge_message(mesh_id)
        assert f"<Sha256>{digest}</Sha256>".encode() in document
        assert digest_of_file(copied) == (BIG, digest)
        await eventually(lambda: _some(hub_system.of_type("DeliveryReceipt")))
    ((receipt, _),) = hub_system.of_type("DeliveryReceipt")
    assert receipt.header.fields.receipt_outcome == "positive"
    assert digest.encode() in receipt.payload  # the receipt names the file's digest
    assert names(big_config.base_dir / "systems" / "health" / "processing") == []


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        (
            {"n.xml": NOTIFICATION, "attachments/../../escape.sh": b"x"},
            "file name '../../escape.sh' holds a path separator",
        ),
        (
            {"n.xml": NOTIFICATION, "notes.txt": b"x"},
            "ZIP member 'notes.txt' is neither the document (*.xml) nor a file under attachments/",
        ),
        (
            {"n.xml": NOTIFICATION, "m.xml": NOTIFICATION},
            "a ZIP holds one document (*.xml), not 2",
        ),
        (
            {"n.xml": NOTIFICATION, "attachments/scan.png": b"x" * 2048},
            "attachment 'scan.png' is 2048 bytes; [limits] max_attachment_bytes is 1024",
        ),
    ],
)
async def test_a_zip_that_breaks_a_rule_is_refused_before_its_files_are_read(
    exchange: Exchange,
    config: AreaConfig,
    health_system: MeshClient,
    tmp_path: Path,
    members: dict[str, bytes],
    reason: str,
) -> None:
    small = AttachmentLimits(max_attachment_bytes=1024, max_total_bytes=4096)
    limited = dataclasses.replace(config, limits=small)
    root = config.base_dir / "systems" / "health"
    bad_id = health_system.send_message(
        ADAPTER_MAILBOX, zipped(members), workflow_id="CPIS", content_type="application/zip"
    )
    async with running_adapter(limited, "health", tmp_path / "ledger.db"):
        await eventually(lambda: _exists(root / "error" / f"{bad_id}.dat.reason"))
    written = (root / "error" / f"{bad_id}.dat.reason").read_text()
    assert written.startswith(f"MESH message {bad_id}: ") and reason in written, written
    assert health_system.track_message(bad_id)["status"] == "accepted"  # not acknowledged
    assert names(root / "processing") == [] and referrals(exchange) == []
