"""`mash-gateway overdue` on a real area store: counts by agency and RAG, ids, exit status."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.cli.overdue_cmd import EXIT_OVERDUE
from gateway.config.area_config import load_config
from gateway.core import deadline_rules as rules
from gateway.core.envelope import HeaderFields
from gateway.core.lifecycle import Event
from gateway.core.records import DeadlineChanges, MessageRecord, Transition
from gateway.infra.clock import utc_now
from gateway.store import store_from_url

pytestmark = pytest.mark.integration


@pytest.fixture
def area(tmp_path: Path) -> Path:
    assert main(["init", str(tmp_path / "area"), "--broker-url", "amqp://127.0.0.1/x"]) == 0
    return tmp_path / "area" / "gateway.toml"


async def routed_request(config_path: Path, message_id: str, rag: str, hours_ago: float) -> None:
    """A request the hub sent ``hours_ago``, recorded as the router records it."""
    config = load_config(str(config_path))
    store = store_from_url(config.store_url)
    await store.open()
    try:
        at = utc_now() - timedelta(hours=hours_ago)
        request = HeaderFields(
            message_id,
            f"CASE-{message_id}",
            "InformationRequest",
            "hub",
            ("police",),
            at,
            "child-safeguarding",
            ("uk-gdpr-6-1-e",),
            rag=rag,
        )
        await store.admit(
            MessageRecord(
                message_id,
                request.correlation_id,
                None,
                "InformationRequest",
                "hub",
                ("police",),
                rag,
                None,
                at,
            ),
            f"digest-{message_id}",
            at,
        )
        opened = rules.opened_by(request, at, config.deadlines, config.hub)
        await store.advance(
            [Transition(message_id, Event.ROUTED, deadlines=DeadlineChanges(opened=opened))], at
        )
    finally:
        await store.close()


def test_overdue_lists_counts_and_ids_and_exits_3(
    area: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(routed_request(area, "req-late", "Red", hours_ago=5))  # Red: 4 h, around the clock
    asyncio.run(routed_request(area, "req-fresh", "Red", hours_ago=0))
    assert main(["--config", str(area), "overdue"]) == EXIT_OVERDUE
    out = capsys.readouterr().out
    lines = out.splitlines()
    police_red = next(
        line.split() for line in lines if line.split()[:3] == ["police", "response", "Red"]
    )
    assert police_red[3:] == ["2", "1", "1"]  # open, overdue, breached
    assert (
        "req-late" in out
        and "CASE-req-late" in out
        and "req-fresh" not in out.split("overdue now")[1]
    )

    assert main(["--config", str(area), "overdue", "--json"]) == EXIT_OVERDUE
    report = json.loads(capsys.readouterr().out)
    assert {d["message_id"] for d in report["overdue"]} == {"req-late"}
    assert {d["kind"] for d in report["overdue"]} == {"delivery", "response"}


def test_nothing_overdue_exits_0(area: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(area), "overdue"]) == 0
    assert "no deadlines recorded" in capsys.readouterr().out
    asyncio.run(routed_request(area, "req-fresh", "Green", hours_ago=0))
    assert main(["--config", str(area), "overdue"]) == 0
    assert "nothing overdue" in capsys.readouterr().out
