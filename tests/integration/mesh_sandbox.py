"""A real MESH server for tests: the ``mesh-sandbox`` package, run by uvicorn on a free local port.

It keeps messages in memory (STORE_MODE=memory) and checks the MESH auth
token with the shared key (AUTH_MODE=full). Its mailboxes are its canned
ones: X26ABC1, X26ABC2 and X26ABC3, password ``password``. A test uses
``reset`` to empty a mailbox before it starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SHARED_KEY = "TestKey"
PASSWORD = "password"
ADAPTER_MAILBOX = "X26ABC1"
AGENCY_MAILBOX = "X26ABC2"


@dataclass(frozen=True)
class MeshSandbox:
    url: str

    def reset(self, mailbox: str) -> None:
        request = urllib.request.Request(f"{self.url}/admin/reset/{mailbox}", method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    def report(self, mailbox: str, **fields: str) -> None:
        """Put a MESH report (e.g. a non-delivery report) into ``mailbox``."""
        body = json.dumps({"mailbox_id": mailbox, **fields}).encode()
        request = urllib.request.Request(
            f"{self.url}/messageexchange/admin/report",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshSandbox]:
    # The sandbox logs every request to stderr whatever uvicorn's level: into a file, since
    # a pipe nobody reads fills up and stops the sandbox mid-test.
    log = tmp_path_factory.mktemp("mesh-sandbox") / "sandbox.log"
    port = _free_port()
    env = {
        **os.environ,
        "ENV": "local",
        "STORE_MODE": "memory",
        "AUTH_MODE": "full",
        "SHARED_KEY": SHARED_KEY,
    }
    with log.open("wb") as errors_out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "mesh_sandbox.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors_out,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
                if reply.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                errors = log.read_text(errors="replace")
                pytest.fail(f"mesh-sandbox did not start: {errors[-2000:]}")
            time.sleep(0.2)
    try:
        yield MeshSandbox(url)
    finally:
        process.terminate()
        process.wait(10)
