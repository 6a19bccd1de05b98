"""MESH: poll the adapter's mailbox for inbound, send to the agency system's mailbox for outbound.

Uses the official ``mesh-client`` (blocking, so every call runs in a
thread). Chunked messages are reassembled by the client. Up to WORKERS
messages are in hand at once, each worker with its own client; outbound
sends have a client of their own, so a long download never holds them up.

Inbound, for each message in the mailbox:
1. it is downloaded (into memory; one over the size limit is spilled to
   ``processing/`` and refused). MESH keeps it until step 4, so this copy
   need not be durable yet;
2. it is mapped, checked and submitted through the intake, which records
   the message ids in the ledger under ``mesh:<MESH id>`` once the broker
   has confirmed them;
3. it is written to ``archive/<MESH id>.dat`` (with ``.sent``) or, if
   refused, to ``error/`` with a ``.reason``, by temp file, fsync, rename;
4. only then is the MESH message acknowledged. A crash before the
   acknowledgement leaves it in the mailbox: the next poll downloads it
   again, the ledger recognises it, and it is acknowledged without being
   sent twice. A failure that is not the document's fault (broker down)
   leaves it unacknowledged for the next poll.

A MESH ``REPORT`` (a non-delivery report: e.g. the agency system did not
acknowledge what we sent within 5 days) goes to ``error/`` with the linked
MESH id, our message id (the local id we set) and MESH's status, and is
counted as a failure; then it is acknowledged.

Outbound, each message for the agency is sent to ``recipient`` with the
workflow id configured for its type, ``local_id`` = our message id and
``subject`` = its type. The handler returns once MESH has accepted it (MESH
then holds it durably), and the MESH id is recorded under
``mesh-out:<message id>``, so a redelivery is not sent again.

Secrets: ``<private keys>/mesh/<agency>.password`` and ``.shared-key``, 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from mesh_client import MeshClient

from adapters.inbound import Intake, Reply, failed
from adapters.ledger import Ledger
from adapters.prepare import Refused
from adapters.profile import Profile
from adapters.transports.durable import move, write_text
from gateway.broker.credentials import CredentialsError, kept_password
from gateway.config.adapter_config import MeshSettings
from gateway.core.xmlsafe import MAX_DOCUMENT_BYTES
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now
from gateway.services.edge import Delivered

log = structlog.get_logger("adapters.mesh")

TRANSPORT = "mesh"
FOLDERS = ("processing", "archive", "error")
WORKERS = 4  # messages in hand at once, each with its own MESH client
COPY_BUFFER = 1024 * 1024


def secret_files(private_keys_dir: Path, agency: str) -> tuple[Path, Path]:
    folder = private_keys_dir / "mesh"
    return folder / f"{agency}.password", folder / f"{agency}.shared-key"


def mesh_client(settings: MeshSettings, private_keys_dir: Path, agency: str) -> MeshClient:
    password_path, key_path = secret_files(private_keys_dir, agency)
    password, shared_key = kept_password(password_path), kept_password(key_path)
    if password is None or shared_key is None:
        missing = password_path if password is None else key_path
        raise CredentialsError(f"{missing}: missing; write the MESH secret there (mode 0600)")
    cert = (str(settings.cert), str(settings.key)) if settings.cert and settings.key else None
    return MeshClient(
        settings.url,
        settings.mailbox,
        password,
        shared_key=shared_key.encode("utf-8"),
        cert=cert,
        verify=str(settings.ca) if settings.ca else None,
        max_chunk_size=settings.max_chunk_size,
        application_name="mash-gateway",
    )


@dataclass(frozen=True)
class Downloaded:
    mesh_id: str
    data: bytes | None  # None when over the size limit: then ``spilled`` holds it
    spilled: Path | None
    size: int
    sha256: str
    report: str | None  # for a REPORT: what MESH says happened, ids only


class MeshInbound:
    """Polls the mailbox; WORKERS messages are in hand at once, each with its own client.

    A MESH client is not shared between threads (its auth nonce counter is
    not thread-safe), so each worker takes one from a small pool.
    """

    def __init__(self, settings: MeshSettings, intake: Intake) -> None:
        self.settings = settings
        self.intake = intake
        self.dirs = {name: settings.root / name for name in FOLDERS}
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = intake.edge.config.private_keys_dir
        self.clients = [mesh_client(settings, keys, intake.agency) for _ in range(WORKERS)]
        self._idle: asyncio.Queue[MeshClient] = asyncio.Queue()
        for client in self.clients:
            self._idle.put_nowait(client)
        self._in_hand: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await asyncio.to_thread(self.clients[0].handshake)  # bad credentials fail at start

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception:  # MESH or broker unreachable: try again next poll
                log.exception("mesh.poll_failed", agency=self.intake.agency)
                failed(self.intake.agency, TRANSPORT, "poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for client in self.clients:
            await asyncio.to_thread(client.close)

    async def poll_once(self) -> int:
        """Start taking every message now in the mailbox that is not already in hand."""
        client = await self._idle.get()
        try:
            mesh_ids = await asyncio.to_thread(client.list_messages)
        finally:
            self._idle.put_nowait(client)
        fresh = [m for m in mesh_ids if m not in self._in_hand]
        for mesh_id in fresh:
            self._in_hand.add(mesh_id)
            client = await self._idle.get()  # at most WORKERS in hand
            task = asyncio.create_task(self._take_with(client, mesh_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(fresh)

    async def _take_with(self, client: MeshClient, mesh_id: str) -> None:
        try:
            downloaded = await asyncio.to_thread(self._download, client, mesh_id)
            await self._take(downloaded)
            await asyncio.to_thread(client.acknowledge_message, mesh_id)
        except Exception:  # left unacknowledged in MESH: the next poll takes it again
            log.exception("mesh.take_failed", agency=self.intake.agency, mesh_id=mesh_id)
            failed(self.intake.agency, TRANSPORT, "take")
        finally:
            self._in_hand.discard(mesh_id)
            self._idle.put_nowait(client)

    def _download(self, client: MeshClient, mesh_id: str) -> Downloaded:
        """Read the message (chunks and all); one over the size limit is spilled to disk.

        The copy need not be durable yet: MESH keeps the message until we
        acknowledge, which happens only after it is sent or filed in error/.
        """
        digest = hashlib.sha256()
        # Not ``with message``: its exit acknowledges, and we acknowledge only once it is durable.
        message = client.retrieve_message(mesh_id)
        try:
            data = message.read(MAX_DOCUMENT_BYTES + 1)
            digest.update(data)
            size = len(data)
            spilled = None
            if size > MAX_DOCUMENT_BYTES:
                spilled = self.dirs["processing"] / f"{mesh_id}.dat"
                with spilled.open("wb") as out:
                    out.write(data)
                    while block := message.read(COPY_BUFFER):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
            report = None
            if str(message.message_type or "DATA").upper() == "REPORT":
                report = (
                    f"MESH report for message {message.mex_header('linkedmsgid', '?')} "
                    f"(our message {message.local_id or '?'}): status "
                    f"{message.mex_header('statuscode', '?')} "
                    f"{message.mex_header('statusdescription', '')}".rstrip()
                )
        finally:
            message.close()  # type: ignore[no-untyped-call]
        kept = None if spilled is not None else data
        return Downloaded(mesh_id, kept, spilled, size, digest.hexdigest(), report)

    async def _take(self, downloaded: Downloaded) -> None:
        source = f"MESH message {downloaded.mesh_id}"
        if downloaded.report is not None:
            await self._refuse(downloaded, Refused("mesh-report", downloaded.report, "report"))
            return
        if downloaded.data is None:
            reason = f"{source}: {downloaded.size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
            await self._refuse(downloaded, Refused("read", reason, "too-large"))
            return
        key = f"mesh:{downloaded.mesh_id}"
        try:
            documents = self.intake.prepare(downloaded.data, source)
            ids = await self.intake.send(documents, key, downloaded.sha256, source, Reply())
        except Refused as refused:
            await self._refuse(downloaded, refused)
            return
        await asyncio.to_thread(self._file, downloaded, "archive", ".sent", "\n".join(ids))
        log.info("mesh.sent", agency=self.intake.agency, mesh_id=downloaded.mesh_id, messages=ids)

    async def _refuse(self, downloaded: Downloaded, refused: Refused) -> None:
        await asyncio.to_thread(self._file, downloaded, "error", ".reason", refused.reason)
        failed(self.intake.agency, TRANSPORT, refused.stage)
        log.warning(
            "mesh.refused",
            agency=self.intake.agency,
            mesh_id=downloaded.mesh_id,
            stage=refused.stage,
        )

    def _file(self, downloaded: Downloaded, folder: str, suffix: str, note: str) -> None:
        """``<MESH id>.dat`` and its note into ``folder``, durably: the note first."""
        target = self.dirs[folder] / f"{downloaded.mesh_id}.dat"
        write_text(target.with_name(target.name + suffix), note + "\n")
        if downloaded.spilled is not None:
            move(downloaded.spilled, self.dirs[folder])
        else:
            with atomic_writer(target) as out:
                out.write(downloaded.data or b"")


class MeshOutbound:
    """The edge's handler: sends each message for the agency to its MESH mailbox, once.

    The edge hands over several messages at once; sends go one at a time,
    because a MESH client's auth nonce counter is not thread-safe.
    """

    def __init__(
        self,
        settings: MeshSettings,
        profile: Profile,
        ledger: Ledger,
        private_keys_dir: Path,
        agency: str,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.ledger = ledger
        self.agency = agency
        self.client = mesh_client(settings, private_keys_dir, agency)
        self._one_at_a_time = asyncio.Lock()

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)

    async def __call__(self, delivered: Delivered) -> None:
        fields = delivered.header.fields
        key = f"mesh-out:{fields.message_id}"
        if await asyncio.to_thread(self.ledger.sent, self.agency, key) is not None:
            return  # sent before a crash that came ahead of the edge's record
        native = self.profile.to_native(delivered.payload, f"message {fields.message_id}")
        async with self._one_at_a_time:
            mesh_id = await asyncio.to_thread(
                self.client.send_message,
                self.settings.recipient,
                native,
                workflow_id=self.settings.workflow_for(fields.message_type),
                local_id=fields.message_id,
                subject=fields.message_type,
                filename=f"{fields.message_id}.xml",
                content_type=self.profile.media_types[0],
            )
        await asyncio.to_thread(
            self.ledger.record,
            self.agency,
            key,
            0,
            delivered.plaintext_sha256,
            f"message {fields.message_id}",
            mesh_id,
            utc_now(),
        )
        log.info(
            "mesh.delivered", agency=self.agency, message_id=fields.message_id, mesh_id=mesh_id
        )
