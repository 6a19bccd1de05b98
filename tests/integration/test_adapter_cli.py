"""`mash-gateway adapter` in the demo area `init` writes: all five profiles in one process."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from mesh_client import MeshClient

from adapters.profile import BUILTIN
from adapters.transports.mesh import secret_files
from gateway.broker.vhost import BrokerAdmin
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import eventually, running_exchange
from tests.integration.mesh_sandbox import (
    ADAPTER_MAILBOX,
    AGENCY_MAILBOX,
    PASSWORD,
    SHARED_KEY,
    MeshSandbox,
    mesh_sandbox,
)

pytestmark = pytest.mark.integration
__all__ = ["mesh_sandbox"]

SAMPLES = {
    name: next((BUILTIN / name / "samples").iterdir()).read_bytes()
    for name in ("police", "education", "csc", "probation", "health")
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "--config", str(config), *args]


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def post(port: int, token: str, body: bytes, media_type: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": media_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/messages", data=body, headers=headers) as reply,
    ):
        return reply.status


async def test_all_five_profiles_run_in_the_demo_area(
    broker_admin: BrokerAdmin, tmp_path: Path, mesh_sandbox: MeshSandbox
) -> None:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as exchange:
        await exchange.edge("hub")
        config = exchange.config.path
        area = config.parent
        csc_port, probation_port = free_port(), free_port()
        text = config.read_text()
        text = text.replace("http://127.0.0.1:8700", mesh_sandbox.url)
        text = text.replace("127.0.0.1:8441", f"127.0.0.1:{csc_port}")
        text = text.replace("127.0.0.1:8442", f"127.0.0.1:{probation_port}")
        config.write_text(text)
        for path, secret in zip(
            secret_files(area / "keys" / "private", "health"), (PASSWORD, SHARED_KEY), strict=True
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secret)
            os.chmod(path, 0o600)
        mesh_sandbox.reset(ADAPTER_MAILBOX)
        issued = subprocess.run(
            cli(config, "adapter", "--issue-token", "csc", "probation"),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        tokens = dict(line.split(": ", 1) for line in issued.splitlines())

        process = subprocess.Popen(cli(config, "adapter"), stderr=subprocess.PIPE)
        try:
            await eventually(lambda: listening(csc_port), timeout=20)
            await eventually(lambda: listening(probation_port), timeout=20)
            for system in ("police", "education"):  # each file drop makes its folders as it starts
                outbox = area / "agency-systems" / system / "outbox"
                await eventually(functools.partial(_exists, outbox), timeout=20)
            police = area / "agency-systems" / "police" / "outbox"
            (police / "ppn.xml.tmp").write_bytes(SAMPLES["police"])
            os.rename(police / "ppn.xml.tmp", police / "ppn.xml")
            education = area / "agency-systems" / "education" / "outbox"
            (education / "cfc.csv.tmp").write_bytes(SAMPLES["education"])
            os.rename(education / "cfc.csv.tmp", education / "cfc.csv")
            assert await post(csc_port, tokens["csc"], SAMPLES["csc"], "application/xml") == 202
            status = await post(
                probation_port, tokens["probation"], SAMPLES["probation"], "application/json"
            )
            assert status == 202
            with MeshClient(
                mesh_sandbox.url, AGENCY_MAILBOX, PASSWORD, shared_key=SHARED_KEY.encode()
            ) as trust:
                trust.send_message(ADAPTER_MAILBOX, SAMPLES["health"], workflow_id="CPIS")

            def senders(message_type: str) -> list[str]:
                inbox = exchange.inboxes["hub"].of_type(message_type)
                return sorted(m.header.fields.sender for m in inbox)

            async def all_arrived() -> bool:
                return (senders("Referral"), senders("InformationResponse")) == (
                    ["education", "education", "health", "police"],
                    ["csc", "probation"],
                )

            await eventually(all_arrived, timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(20)
        errors = process.stderr.read().decode() if process.stderr else ""
        assert code == 0, errors[-3000:]


async def test_run_hosts_the_router_and_an_adapter_in_one_process(
    broker_admin: BrokerAdmin, tmp_path: Path
) -> None:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as exchange:
        await exchange.edge("hub")
        await exchange.stop_router()  # the `run` process routes instead
        config = exchange.config.path
        process = subprocess.Popen(
            cli(config, "run", "--with-adapters", "police"), stderr=subprocess.PIPE
        )
        try:
            outbox = config.parent / "agency-systems" / "police" / "outbox"
            await eventually(lambda: _exists(outbox), timeout=20)
            (outbox / "ppn.xml.tmp").write_bytes(SAMPLES["police"])
            os.rename(outbox / "ppn.xml.tmp", outbox / "ppn.xml")

            async def referred() -> bool:
                return bool(exchange.inboxes["hub"].of_type("Referral"))

            await eventually(referred, timeout=30)
            archive = outbox.parent / "archive"
            await eventually(lambda: _holds_files(archive), timeout=30)  # sent, then archived
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(20)
        errors = process.stderr.read().decode() if process.stderr else ""
        assert code == 0, errors[-3000:]


async def _exists(path: Path) -> bool:
    return path.is_dir()


async def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())
