"""The README's first command: the whole multi-agency flow on the real broker."""

import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config

pytestmark = pytest.mark.integration

# Personal data in the demo payloads: none of it may reach the terminal or the logs.
PERSONAL_DATA = [
    "Jamie",
    "Example",
    "9434765870",
    "9434765919",
    "2016-05-14",
    "Sample Street",
    "ZZ1 1AA",
    "B801200005001",
]


def test_demo_runs_the_case_end_to_end_without_printing_personal_data(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], broker_admin: object
) -> None:
    area = tmp_path / "demo-area"
    assert main(["demo", "--area", str(area), "--logs"]) == 0
    out, err = capfd.readouterr()
    for step in (
        "1. police refer",
        "2. the hub rates",
        "3. health",
        "3. csc",
        "3. probation",
        "5. all partners answered",
        "police received Decision",
    ):
        assert step in out
    assert (
        out.count("got a DeliveryReceipt") == 8
    )  # 1 referral + 3 requests + 3 responses + 1 decision
    for value in PERSONAL_DATA:
        assert value not in out + err, f"{value!r} leaked into the demo output"
    assert "[answered]" in out and "[rejected]" not in out
    # The vhost is gone; the area and its store remain for `track`.
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True)
    assert "mash-demo-" not in vhosts.stdout
    config = load_config(str(area / "gateway.toml"))
    assert Path(config.store_url.removeprefix("sqlite:///")).exists()
    # The router's audit trail of the case is intact and signed.
    assert main(["--config", str(area / "gateway.toml"), "audit", "verify"]) == 0
    audit_lines = (area / "state" / "audit.jsonl").read_text()
    assert '"outcome": "routed"' in audit_lines or '"outcome":"routed"' in audit_lines
    for value in PERSONAL_DATA:
        assert value not in audit_lines
