"""File drop adapters on the real exchange: police PPN XML and education CSV, end to end.

Every bad input ends in error/ with a ``.reason`` beside it, and nothing of
it reaches the hub.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from adapters.framework import adapter_config
from adapters.inbound import Intake
from adapters.ledger import Ledger
from adapters.profile import BUILTIN, load_profile, profile_dir
from adapters.transports.filedrop import FileDropInbound, folders, make_folders, refile_refused
from gateway.broker.vhost import BrokerAdmin
from gateway.core.resources import schemas_dir
from gateway.infra.clock import utc_now
from gateway.services import metrics
from gateway.services.edge import Submission
from gateway.services.transfer_sender import AttachmentFile
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.integration

PPN = (BUILTIN / "police" / "samples" / "ppn-child-domestic-abuse.xml").read_bytes()
CFC = (BUILTIN / "education" / "samples" / "causes-for-concern.csv").read_bytes()
REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


def filedrop(agency: str, profile: str, recipient: str = "hub") -> str:
    return (
        f'[[adapters]]\nagency = "{agency}"\nprofile = "{profile}"\nrecipients = ["{recipient}"]\n'
        f'transport = "filedrop"\n[adapters.filedrop]\nroot = "systems/{agency}"\n'
        "poll_seconds = 0.05\n"
    )


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        await running.edge("hub")
        yield running


def drop(root: Path, name: str, data: bytes) -> None:
    """What an agency system does: write a temp name, then rename into place."""
    temp = root / "outbox" / f"{name}.tmp"
    temp.write_bytes(data)
    os.rename(temp, root / "outbox" / name)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def settled(root: Path, count: int) -> None:
    """Wait until ``count`` files have been filed into archive/ or error/."""

    async def done() -> bool:
        names = files(root / "archive") + files(root / "error")
        filed = [n for n in names if "." in n and not n.startswith(".")]  # not a .part temp
        return len([n for n in filed if not n.endswith((".sent", ".reason"))]) >= count

    await eventually(done)


def referrals(exchange: Exchange) -> list[bytes]:
    return [m.payload for m in exchange.inboxes["hub"].of_type("Referral")]


async def test_police_notice_reaches_the_hub_with_a_receipt_back(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = add_adapter(exchange, filedrop("police", "police"))
    root = config.base_dir / "systems" / "police"
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        drop(root, "ppn-004512.xml", PPN)
        await eventually(lambda: _some(referrals(exchange)))
        await settled(root, 1)
        (referral,) = referrals(exchange)
        assert b'<Identifier scheme="local" system="Demo RMS PPN">PPN-2026-004512' in referral
        (archived,) = [n for n in files(root / "archive") if n.endswith("--ppn-004512.xml")]
        assert (root / "archive" / archived).read_bytes() == PPN
        (sent_id,) = (root / "archive" / f"{archived}.sent").read_text().split()
        assert exchange.inboxes["hub"].of_type("Referral")[0].header.fields.message_id == sent_id
        assert files(root / "outbox") == files(root / "processing") == files(root / "error") == []

        async def receipted() -> bool:  # the .xml comes last: the sign both are complete
            return any(n.endswith(".xml") for n in files(root / "inbox"))

        await eventually(receipted)
        (facts_file,) = [n for n in files(root / "inbox") if n.endswith(".json")]
        facts = json.loads((root / "inbox" / facts_file).read_text())
        assert (facts["message_type"], facts["in_reply_to"]) == ("DeliveryReceipt", sent_id)
        assert (root / "inbox" / f"{facts['message_id']}.xml").exists()


async def test_education_csv_rows_each_become_a_referral_with_the_upn(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = add_adapter(exchange, filedrop("education", "education"))
    root = config.base_dir / "systems" / "education"
    async with running_adapter(config, "education", tmp_path / "ledger.db"):
        drop(root, "cfc-2026-11-23.csv", CFC)
        await eventually(lambda: _count(referrals(exchange), 2))
        await settled(root, 1)
    assert all(
        b'<Identifier scheme="upn">B801200005001</Identifier>' in r for r in referrals(exchange)
    )
    assert [b'<Concern code="3A"/>' in r for r in referrals(exchange)] == [True, False]


async def test_every_bad_file_ends_in_error_with_its_reason(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = add_adapter(exchange, filedrop("police", "police"))
    root = config.base_dir / "systems" / "police"
    with_upn = PPN.replace(b"</NHSNumber>", b"</NHSNumber><UPN>B801200005001</UPN>")
    bad_postcode = PPN.replace(b"ZZ1 1AA", b"NOT A POSTCODE")
    counted_before = {stage: errors_counted(stage) for stage in STAGES}
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        drop(root, "good.xml", PPN)
        await eventually(lambda: _some(referrals(exchange)))
        (root / "outbox" / "unreadable.xml").mkdir()  # not a file at all
        drop(root, "not-a-ppn.xml", b"<Incident><Ref>1</Ref></Incident>")
        drop(root, "bad-postcode.xml", bad_postcode)
        drop(root, "truncated.xml", PPN[:700])
        drop(root, "again.xml", PPN)  # the same content as good.xml
        drop(root, "with-upn.xml", with_upn)
        (root / "outbox" / "half-written.xml.tmp").write_bytes(PPN[:100])
        (root / "outbox" / ".still-writing.xml").write_bytes(PPN[:100])
        await settled(root, 7)
        reasons = {
            name.split("--", 1)[1].removesuffix(".reason"): (root / "error" / name).read_text()
            for name in files(root / "error")
            if name.endswith(".reason")
        }
        assert sorted(files(root / "outbox")) == [".still-writing.xml", "half-written.xml.tmp"]
    assert reasons["unreadable.xml"].startswith(
        "unreadable.xml: is a folder, not a regular file; only regular files are taken"
    )
    assert next((root / "error").glob("*--unreadable.xml")).is_dir()  # moved, unread
    assert reasons["not-a-ppn.xml"].startswith("not-a-ppn.xml: line 1: PPNExport: the root is")
    assert reasons["bad-postcode.xml"].startswith("bad-postcode.xml:")
    assert "Postcode" in reasons["bad-postcode.xml"]
    assert "not well-formed" in reasons["truncated.xml"]
    sent_id = exchange.inboxes["hub"].of_type("Referral")[0].header.fields.message_id
    assert reasons["again.xml"] == (
        f"again.xml: the same content was already sent from good.xml as message(s) {sent_id}; "
        "not sent again\n"
    )
    assert "a UPN may travel only in education flows" in reasons["with-upn.xml"]
    for name in reasons:  # the refused file itself is kept beside its reason
        assert any(n.endswith(f"--{name}") for n in files(root / "error"))
    assert len(referrals(exchange)) == 1
    counted = {stage: errors_counted(stage) - counted_before[stage] for stage in STAGES}
    assert counted == {"not-a-file": 1, "mapping": 2, "schema": 1, "duplicate": 1, "policy": 1}


STAGES = ("not-a-file", "mapping", "schema", "duplicate", "policy")


async def test_a_file_the_router_refused_moves_from_archive_to_error_with_the_reason(
    exchange: Exchange, tmp_path: Path
) -> None:
    """No agreement lets police refer to education: the NonDelivery files the PPN under error/."""
    config = add_adapter(exchange, filedrop("police", "police", recipient="education"))
    root = config.base_dir / "systems" / "police"
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        drop(root, "ppn-004512.xml", PPN)
        await eventually(lambda: _filed(root / "error", "--ppn-004512.xml"))
        await eventually(lambda: _inbox_holds(root, "NonDelivery"))
    (name,) = [n for n in files(root / "error") if n.endswith("--ppn-004512.xml")]
    assert files(root / "error") == sorted([name, f"{name}.reason", f"{name}.sent"])
    assert files(root / "archive") == []
    assert (root / "error" / name).read_bytes() == PPN
    (sent_id,) = (root / "error" / f"{name}.sent").read_text().split()
    reason = (root / "error" / f"{name}.reason").read_text()
    assert reason.startswith(f"ppn-004512.xml: the exchange refused message {sent_id}: policy: ")
    assert "education" in reason
    (notice,) = inbox_facts(root, "NonDelivery")
    assert notice["in_reply_to"] == sent_id  # and the agency system has the notice itself


async def test_a_csv_whose_rows_the_router_refused_lists_every_refused_row(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Two rows, two NonDeliveries, racing the filing of the file: one move, both reasons."""
    config = add_adapter(exchange, filedrop("education", "education", recipient="police"))
    root = config.base_dir / "systems" / "education"
    async with running_adapter(config, "education", tmp_path / "ledger.db"):
        drop(root, "cfc.csv", CFC)
        await eventually(lambda: _filed(root / "error", "--cfc.csv"))

        async def both_reasons() -> bool:
            reasons = [n for n in files(root / "error") if n.endswith(".reason")]
            return bool(reasons) and _lines(root / "error" / reasons[0]) == 2

        await eventually(both_reasons)
    (name,) = [n for n in files(root / "error") if n.endswith("--cfc.csv")]
    sent_ids = (root / "error" / f"{name}.sent").read_text().split()
    lines = (root / "error" / f"{name}.reason").read_text().splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        f"the exchange refused message {i}" for i in sent_ids
    ]
    assert files(root / "archive") == []


def test_a_refusal_recorded_before_its_file_is_filed_moves_it_when_it_is(tmp_path: Path) -> None:
    """The NonDelivery of row 2 came back while the file was still in processing/: the filing
    finds the refusal in the ledger; the row that went through is named, so nobody resends it."""
    root = tmp_path / "drop"
    make_folders(root)
    dirs = folders(root)
    ledger = Ledger(tmp_path / "ledger.db")
    key, now = "file:0123", utc_now()
    ledger.record("education", key, 0, "0123", "cfc.csv", "id-row-2", now)
    ledger.record("education", key, 1, "0123", "cfc.csv", "id-row-3", now)
    ledger.record_refusal("education", "id-row-3", "policy: no agreement", now)
    name = "20261123T090000Z-0000abcd--cfc.csv"
    (dirs["archive"] / name).write_bytes(CFC)  # as the filing leaves it
    (dirs["archive"] / f"{name}.sent").write_text("id-row-2\nid-row-3\n")

    refile_refused(dirs, ledger, "education", key, name)
    refile_refused(dirs, ledger, "education", key, name)  # the other side, too: no harm
    ledger.close()
    assert files(dirs["archive"]) == []
    assert files(dirs["error"]) == [name, f"{name}.reason", f"{name}.sent"]
    assert (dirs["error"] / f"{name}.reason").read_text() == (
        "cfc.csv: the exchange refused message id-row-3: policy: no agreement\n"
        "cfc.csv: not refused, do not send again: id-row-2\n"
    )


def errors_counted(stage: str) -> float:
    labels = {"agency": "police", "transport": "filedrop", "stage": stage}
    return metrics.REGISTRY.get_sample_value("mash_gateway_adapter_errors_total", labels) or 0.0


async def test_a_claimed_file_that_vanishes_or_turns_into_a_link_is_filed_with_its_reason(
    exchange: Exchange, tmp_path: Path
) -> None:
    """The races after a claim, made to happen: each file ends in error/, and sending goes on."""
    config = add_adapter(exchange, filedrop("police", "police"))
    spec = adapter_config(config, "police")
    assert spec.filedrop is not None
    root = spec.filedrop.root
    ledger = Ledger(tmp_path / "ledger.db")
    profile = load_profile(profile_dir(spec.profile, config.base_dir))
    edge = await exchange.edge("police", consume=False)
    inbound = FileDropInbound(spec.filedrop, Intake(spec, profile, edge, ledger))
    outside = tmp_path / "outside.xml"
    outside.write_bytes(PPN.replace(b"PPN-2026-004512", b"PPN-2026-999999"))
    before = {stage: errors_counted(stage) for stage in ("vanished", "not-a-file")}
    try:
        gone = root / "processing" / "20261123T090000Z-0000abcd--gone.xml"  # deleted after claim
        await inbound.process(gone, resuming=False)
        swapped = root / "processing" / "20261123T090000Z-0000abce--swapped.xml"
        swapped.symlink_to(outside)  # a link put in place of the claimed file
        await inbound.process(swapped, resuming=False)
        drop(root, "ppn-004512.xml", PPN)
        assert await inbound.poll_once() == 1
    finally:
        ledger.close()
    error = root / "error"
    assert (error / f"{gone.name}.reason").read_text() == (
        "gone.xml: vanished before it was read (deleted or moved); nothing was sent\n"
    )
    assert not (error / gone.name).exists()
    assert (
        (error / f"{swapped.name}.reason")
        .read_text()
        .startswith("swapped.xml: is a symbolic link, not a regular file")
    )
    assert (error / swapped.name).is_symlink() and outside.exists()
    assert {stage: errors_counted(stage) - before[stage] for stage in before} == {
        "vanished": 1,
        "not-a-file": 1,
    }
    await eventually(lambda: _some(referrals(exchange)))
    (referral,) = referrals(exchange)
    assert b"PPN-2026-004512" in referral
    assert files(root / "processing") == []


async def test_a_restart_resumes_a_claimed_file_without_sending_twice(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A crash after the first of two rows was sent: the restart sends only the second."""
    config = add_adapter(exchange, filedrop("education", "education"))
    root = config.base_dir / "systems" / "education"
    for folder in ("outbox", "processing", "archive", "error", "inbox"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    claimed = root / "processing" / "20261123T090000Z-0000abcd--cfc.csv"
    claimed.write_bytes(CFC)
    digest = hashlib.sha256(CFC).hexdigest()
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.record(
        "education", f"file:{digest}", 0, digest, "cfc.csv", "sent-before-crash", utc_now()
    )
    ledger.close()
    async with running_adapter(config, "education", tmp_path / "ledger.db"):
        await settled(root, 1)
        await eventually(lambda: _some(referrals(exchange)))
    (referral,) = referrals(exchange)
    assert b'<Concern code="NEG"/>' in referral  # the second row only
    sent = (root / "archive" / f"{claimed.name}.sent").read_text().split()
    assert sent[0] == "sent-before-crash" and len(sent) == 2


async def test_archived_files_past_their_retention_are_deleted_and_errors_kept(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = add_adapter(exchange, filedrop("police", "police") + "archive_days = 30\n")
    root = config.base_dir / "systems" / "police"
    for folder in ("archive", "error"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    long_ago = utc_now().timestamp() - 31 * 86400
    for name in ("old--ppn.xml", "old--ppn.xml.sent", "new--ppn.xml"):
        (root / "archive" / name).write_bytes(PPN)
    (root / "error" / "old--bad.xml").write_bytes(b"<not")
    for path in (root / "archive" / "old--ppn.xml", root / "archive" / "old--ppn.xml.sent"):
        os.utime(path, (long_ago, long_ago))
    os.utime(root / "error" / "old--bad.xml", (long_ago, long_ago))

    async def sent() -> bool:
        return any(n.endswith("--ppn-004512.xml.sent") for n in files(root / "archive"))

    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        drop(root, "ppn-004512.xml", PPN)
        await eventually(sent)
    archived = files(root / "archive")
    assert "old--ppn.xml" not in archived and "old--ppn.xml.sent" not in archived
    assert "new--ppn.xml" in archived and len(archived) == 3  # and the file just sent, twice
    assert files(root / "error") == ["old--bad.xml"]  # a person must act on these


async def test_messages_for_the_agency_are_written_once_and_receipted(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = add_adapter(exchange, filedrop("police", "police"))
    root = config.base_dir / "systems" / "police"
    hub = await exchange.edge("hub")
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        sent = await hub.submit(Submission(REQUEST, ("police",), correlation_id="CASE-9"))
        payload = root / "inbox" / f"{sent.message_id}.xml"
        await eventually(lambda: _exists(payload))
        assert payload.read_bytes() == REQUEST
        facts = json.loads((root / "inbox" / f"{sent.message_id}.json").read_text())
        assert facts["correlation_id"] == "CASE-9"
        assert facts["sender"] == "hub" and facts["message_type"] == "InformationRequest"
        await eventually(lambda: _some(exchange.inboxes["hub"].of_type("DeliveryReceipt")))
    receipt = exchange.inboxes["hub"].of_type("DeliveryReceipt")[0]
    assert receipt.header.fields.in_reply_to == sent.message_id
    assert receipt.header.fields.receipt_outcome == "positive"


def inbox_facts(root: Path, message_type: str) -> list[dict[str, object]]:
    facts = [json.loads(p.read_text()) for p in (root / "inbox").glob("*.json")]
    return [f for f in facts if f["message_type"] == message_type]


async def _inbox_holds(root: Path, message_type: str) -> bool:
    return bool(inbox_facts(root, message_type))


async def _filed(folder: Path, suffix: str) -> bool:
    return any(n.endswith(suffix) for n in files(folder))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def _some(items: Sequence[object]) -> bool:
    return bool(items)


async def _count(items: list[bytes], n: int) -> bool:
    return len(items) >= n


async def _exists(path: Path) -> bool:
    return path.exists()


async def test_a_message_with_files_is_written_with_its_folder_before_its_xml(
    exchange: Exchange, tmp_path: Path
) -> None:
    config = add_adapter(exchange, filedrop("police", "police"))
    root = config.base_dir / "systems" / "police"
    hub = await exchange.edge("hub")
    scan = tmp_path / "body map.png"
    scan.write_bytes(os.urandom(300_000))
    async with running_adapter(config, "police", tmp_path / "ledger.db"):
        sent = await hub.submit(
            Submission(REQUEST, ("police",), attachments=(AttachmentFile(scan),))
        )
        payload = root / "inbox" / f"{sent.message_id}.xml"
        await eventually(lambda: _exists(payload))
        folder = root / "inbox" / f"{sent.message_id}.attachments"
        assert (folder / "body map.png").read_bytes() == scan.read_bytes()
        facts = json.loads((root / "inbox" / f"{sent.message_id}.json").read_text())
        digest = hashlib.sha256(scan.read_bytes()).hexdigest()
        assert facts["attachments"] == [
            {"file_name": "body map.png", "size": 300_000, "sha256": digest}
        ]
        await eventually(lambda: _some(exchange.inboxes["hub"].of_type("DeliveryReceipt")))
    receipt = exchange.inboxes["hub"].of_type("DeliveryReceipt")[0]
    assert receipt.header.fields.receipt_outcome == "positive"
    assert digest.encode() in receipt.payload
