"""A file drop's document with its files: ``NAME.attachments/`` claimed with ``NAME.xml``.

A police notice dropped with its folder of files reaches the hub with every
file byte-identical, and the folder leaves no trace in outbox/ or
processing/. A folder that is a link, holds a link, a FIFO, a subfolder, a
name that may not travel or a file over a limit sends nothing: the
document and its folder go to error/ with a reason naming the file. A crash
between the two claims is resumed from outbox/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.profile import BUILTIN
from adapters.transports.filedrop import FILES_SUFFIX, make_folders
from gateway.broker.vhost import BrokerAdmin
from gateway.core.attachments import AttachmentLimits
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange
from tests.integration.test_adapter_filedrop import drop, filedrop, files, settled
from tests.integration.test_adapter_http_attachments import Hub, hub_taking_files

pytestmark = pytest.mark.integration

PPN = (BUILTIN / "police" / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()


def ppn(ref: str) -> bytes:
    return PPN.replace(b"PPN-2026-004512", ref.encode())


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


def folder_of(root: Path, name: str, contents: dict[str, bytes]) -> Path:
    """What the agency system writes first: the document's folder of files."""
    folder = root / "outbox" / f"{Path(name).stem}{FILES_SUFFIX}"
    folder.mkdir()
    for file_name, data in contents.items():
        (folder / file_name).write_bytes(data)
    return folder


async def arrived(hub: Hub, count: int) -> None:
    async def enough() -> bool:
        return len(hub.messages) >= count

    await eventually(enough, timeout=30)


async def test_a_notice_with_its_folder_reaches_the_hub_with_every_file(
    exchange: Exchange, tmp_path: Path
) -> None:
    hub = await hub_taking_files(exchange)
    config = add_adapter(exchange, filedrop("police", "police"))
    root = config.base_dir / "systems" / "police"
    make_folders(root)
    scan, photo = os.urandom(3 * 1024 * 1024 + 11), os.urandom(5000)
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        folder_of(root, "ppn-1.xml", {"body-map.png": photo, "statement scan.pdf": scan})
        drop(root, "ppn-1.xml", ppn("PPN-2026-000001"))  # the document last
        await arrived(hub, 1)
        await settled(root, 1)
        assert files(root / "outbox") == files(root / "processing") == files(root / "error") == []
        assert [n for n in files(root / "archive") if n.endswith(FILES_SUFFIX)] == []
    (message,) = hub.messages
    assert hub.files[message.header.fields.message_id] == [
        ("body-map.png", "image/png", 5000, hashlib.sha256(photo).hexdigest()),
        ("statement scan.pdf", "application/pdf", len(scan), hashlib.sha256(scan).hexdigest()),
    ]


async def test_a_bad_folder_sends_nothing_and_goes_to_error_with_a_reason_naming_the_file(
    exchange: Exchange, tmp_path: Path
) -> None:
    hub = await hub_taking_files(exchange)
    config = add_adapter(exchange, filedrop("police", "police"))
    config = dataclasses.replace(config, limits=AttachmentLimits(max_attachment_bytes=1000))
    root = config.base_dir / "systems" / "police"
    make_folders(root)
    secret = tmp_path / "outside.key"
    secret.write_bytes(b"not for the exchange")
    cases: dict[str, str] = {}

    folder = folder_of(root, "link-in.xml", {"a.txt": b"a"})
    (folder / "key.pem").symlink_to(secret)
    cases["link-in.xml"] = "key.pem is a symbolic link"
    (root / "outbox" / f"link-folder{FILES_SUFFIX}").symlink_to(tmp_path)
    cases["link-folder.xml"] = "link-folder.attachments/ is a symbolic link"
    folder = folder_of(root, "fifo.xml", {})
    os.mkfifo(folder / "pipe")
    cases["fifo.xml"] = "pipe is a FIFO"
    folder = folder_of(root, "nested.xml", {})
    (folder / "inner").mkdir()
    cases["nested.xml"] = "inner is a folder"
    folder_of(root, "control.xml", {"tab\there.txt": b"x"})
    cases["control.xml"] = "control character"
    folder_of(root, "big.xml", {"video.mp4": b"v" * 1001})
    cases["big.xml"] = "max_attachment_bytes is 1000"
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        for n, name in enumerate(cases):
            drop(root, name, ppn(f"PPN-2026-00010{n}"))
        await settled(root, len(cases))
        reasons = {
            p.name.split("--", 1)[1].removesuffix(".reason"): p.read_text()
            for p in (root / "error").iterdir()
            if p.name.endswith(".xml.reason")
        }
        for name, expected in cases.items():
            assert expected in reasons[name], (name, reasons[name])
            stem = Path(name).stem
            assert any(n.endswith(f"--{stem}{FILES_SUFFIX}") for n in files(root / "error"))
        assert files(root / "outbox") == files(root / "processing") == []
    assert hub.messages == []
    assert secret.read_bytes() == b"not for the exchange"  # never moved, never sent


async def test_a_crash_between_the_two_claims_is_resumed_from_outbox(
    exchange: Exchange, tmp_path: Path
) -> None:
    hub = await hub_taking_files(exchange)
    config = add_adapter(exchange, filedrop("police", "police"))
    root = config.base_dir / "systems" / "police"
    make_folders(root)
    letter = os.urandom(70_000)
    folder_of(root, "ppn-2.xml", {"letter.pdf": letter})
    # The document was claimed, then the process died before the folder followed it.
    (root / "processing" / "20261202T130000Z-0000abcd--ppn-2.xml").write_bytes(
        ppn("PPN-2026-000002")
    )
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        await arrived(hub, 1)
        await settled(root, 1)
        assert files(root / "outbox") == files(root / "processing") == files(root / "error") == []
    (message,) = hub.messages
    (received,) = hub.files[message.header.fields.message_id]
    assert received[3] == hashlib.sha256(letter).hexdigest()
