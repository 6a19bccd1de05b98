"""The README's first command: the whole multi-agency flow on the real broker.

Neither its terminal output, nor its console or JSON logs, nor its metrics,
nor its audit trail may carry any personal data from the demo payloads.
"""

import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.config.metrics_config import Listen
from gateway.core.resources import schemas_dir
from gateway.core.xmlsafe import parse
from gateway.demo import flow as demo_flow
from gateway.demo import mail as demo_mail
from gateway.infra import logs
from gateway.services.metrics_server import serving
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.integration

DEMO_PAYLOADS = [
    schemas_dir() / "examples" / "demo" / "police-referral.xml",
    *(
        schemas_dir() / "examples" / "valid" / name
        for name in ("information-request.xml", "information-response.xml", "decision.xml")
    ),
]
# Leaf elements whose text is controlled vocabulary, a role or a timestamp, not about a person.
NOT_PERSONAL = {
    "Purpose", "LawfulBasis", "Rag", "From", "To", "Sex", "Source", "ReleaseCondition",
    "MediaType", "SizeBytes", "Sha256", "Role", "Organisation", "Agency",
}  # fmt: skip


def payload_personal_data(payloads: Sequence[Path] = DEMO_PAYLOADS) -> set[str]:
    """Every name, date of birth, identifier, address, contact and narrative in the payloads."""
    found = set()
    for path in payloads:
        for element in parse(path.read_bytes(), path.name).iter():
            name = str(element.tag).rsplit("}", 1)[-1]
            text = (element.text or "").strip()
            if len(element) or len(text) < 3 or name in NOT_PERSONAL:
                continue
            if name.endswith(("At", "Due")):  # timestamps of the process, re-dated by the demo
                continue
            found.add(text)
    return found


# Personal data in the demo payloads, and in housing's mailed answer (its officer's name,
# address and records): none of it may reach the terminal or the logs.
PERSONAL_DATA = sorted(
    payload_personal_data()
    | {"Jamie", "Example", "9434765870", "9434765919", "2016-05-14", "Sample Street", "ZZ1 1AA"}
    | {
        demo_flow.HOUSING_ANSWERS[name]
        for name in ("Responder-Name", "Consent-Reason", "Necessary-And-Proportionate")
    }
    | {"temporary accommodation", "rent arrears", demo_mail.OFFICER}
)


def test_the_personal_data_list_covers_every_kind_of_personal_data() -> None:
    for value in (
        "Jamie",  # names
        "Example",
        "Jay",
        "2016-05-14",  # dates of birth
        "1990-11-02",
        "9434765870",  # NHS numbers
        "12 Sample Street",  # addresses
        "ZZ1 1AA",
        "01632 960456",  # contacts
        "ppu@police.demo.example",
    ):
        assert value in PERSONAL_DATA
    narrative = [v for v in PERSONAL_DATA if v.startswith("At morning drop-off Jamie")]
    assert narrative, "the referral's narrative is not in the list"


def test_demo_runs_the_case_end_to_end_without_printing_personal_data(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], broker_admin: object
) -> None:
    area = tmp_path / "demo-area"
    assert main(["demo", "--area", str(area), "--logs"]) == 0
    out, err = capfd.readouterr()
    for step in (
        "1. police refer",
        "2. the hub rates",
        "3. the partners search their records",
        "   health researches its records and answers",
        "   csc researches its records and answers",
        "   probation is busy and stays silent",
        "   housing has only e-mail: its officer gets the request encrypted",
        "Accepted as InformationResponse",
        "(pgp-verified)",
        "housing's officer got a mail: Accepted: InformationResponse",
        "probation got a level 1 Escalation: probation's response is overdue",
        "hub got a level 1 Escalation: probation's response is overdue",
        "hub got a level 2 Escalation: probation's response is overdue",
        "4. probation's deadline passed",
        "5. the hub manager calls probation",
        "6. all partners answered",
        "police received Decision",
    ):
        assert step in out
    numbered = [int(line[0]) for line in out.splitlines() if re.match(r"\d\. ", line)]
    assert numbered == [1, 2, 3, 4, 5, 6]  # each step once, in order
    # Receipts end at the router (nobody receipts a receipt): shown forwarded, not stuck.
    assert "[routed]" not in out.split("Case timeline", 1)[1]
    # The printed timeline shows the ladder and the late answer closing the deadline.
    assert "response Amber owed by probation to hub" in out and "[met late]" in out
    assert "escalated level 1" in out and "escalated level 2" in out and "met-late" in out
    # 1 referral + 4 requests + 3 responses + 1 decision; housing's receipt goes to the intake.
    assert out.count("got a DeliveryReceipt") == 9
    assert "with discharge-letter.pdf (application/pdf, " in out and ", verified" in out
    # Housing's mailed answer reached the hub as the id the intake gave it, and closed its
    # deadline like any other answer.
    accepted = re.search(r"Accepted as InformationResponse (\S+)", out)
    assert accepted and f"hub received InformationResponse {accepted[1]} from housing" in out
    assert "InformationResponse" in out and "housing -> hub  [delivered]" in out
    housing = out[out.index("response Amber owed by housing to hub") :].splitlines()[0]
    assert housing.endswith("[met]"), housing
    for value in PERSONAL_DATA:
        assert value not in out + err, f"{value!r} leaked into the demo output"
    assert "[answered]" in out and "[rejected]" not in out
    # The console's address and a one-time sign-in for this run.
    assert "console, then http://127.0.0.1:8480/case?id=MASH-DEMO-" in out
    assert "demo-operator (operator), one-time password " in out
    # The vhost is gone; the area and its store remain for `track`.
    vhosts = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True)
    assert "mash-demo-" not in vhosts.stdout
    config = load_config(str(area / "gateway.toml"))
    assert Path(config.store_url.removeprefix("sqlite:///")).exists()
    # The board's report and the overdue table run on the demo area: counts, never people.
    capfd.readouterr()
    assert main(["--config", str(area / "gateway.toml"), "report"]) == 0
    assert main(["--config", str(area / "gateway.toml"), "overdue"]) == 0
    figures, _ = capfd.readouterr()
    assert ["Referral", "police", "1", "0"] in [line.split() for line in figures.splitlines()]
    probation = next(
        line.split()[:7]
        for line in figures.splitlines()
        if line.split()[:2] == ["probation", "response"]
    )
    assert probation == ["probation", "response", "Amber", "1", "0", "1", "0"]  # answered late
    for value in PERSONAL_DATA:
        assert value not in figures, f"{value!r} leaked into the report"
    # The router's audit trail of the case is intact and signed.
    assert main(["--config", str(area / "gateway.toml"), "audit", "verify"]) == 0
    audit_lines = (area / "state" / "audit.jsonl").read_text()
    assert '"outcome": "routed"' in audit_lines or '"outcome":"routed"' in audit_lines
    for value in PERSONAL_DATA:
        assert value not in audit_lines


async def test_json_logs_and_metrics_of_the_demo_carry_ids_and_no_personal_data(
    capfd: pytest.CaptureFixture[str], broker_admin: object
) -> None:
    """The production rendering, at DEBUG so that nothing is filtered out, plus /metrics."""
    logs.configure(json=True, level=logging.DEBUG)
    # A short path: gpg-agent's socket under the area's keyring must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="mash-demo-") as tmp:
        try:
            async with serving(Listen("127.0.0.1", 0)) as port:
                case = await demo_flow.run(Path(tmp, "area"), AMQP_URL)
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/metrics") as response,
                ):
                    exposition = await response.text()
        finally:
            logs.configure(quiet=True)
    out, err = capfd.readouterr()
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, "the demo logged nothing"
    about_messages = [line for line in lines if str(line["event"]).startswith("message.")]
    assert {"message.submitted", "message.routed"} <= {line["event"] for line in about_messages}
    for line in about_messages:
        assert line["message_id"] and line["correlation_id"] == case, line
    assert 'message_type="Referral"' in exposition
    everything = out + err + exposition
    for value in PERSONAL_DATA:
        assert value not in everything, f"{value!r} leaked into the logs or metrics"
