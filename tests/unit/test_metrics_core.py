"""The metrics' pure parts: the [metrics] table, label folding, key expiry, deadline gauges."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from gateway.config.area_config import ConfigError, parse_config
from gateway.config.metrics_config import Listen, parse_listen, parse_metrics
from gateway.core.envelope.claimed import ClaimedFacts
from gateway.core.errors import GatewayError
from gateway.core.records import DeadlineCount
from gateway.core.registry import Agency, KeyUse, PublicKeyRecord, Registry
from gateway.demo.area import demo_config
from gateway.services import metrics

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BASE = demo_config("amqp://guest:guest@127.0.0.1:5672/mash-demo", date(2026, 11, 23))


def fail(key: str, problem: str) -> GatewayError:
    return GatewayError(f"{key}: {problem}")


def test_metrics_are_off_without_the_table_and_on_where_it_says() -> None:
    assert parse_metrics(None, fail) is None
    assert parse_metrics({"listen": "127.0.0.1:9464"}, fail) == Listen("127.0.0.1", 9464)
    assert parse_metrics({"listen": "[::1]:9464"}, fail) == Listen("::1", 9464)
    assert str(Listen("::1", 9464)) == "[::1]:9464"
    assert parse_listen("0.0.0.0:0", "k", fail) == Listen("0.0.0.0", 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"listen": "9464"}, "metrics.listen: '9464' must be host:port"),
        ({"listen": "localhost:http"}, "metrics.listen: 'localhost:http': the port must be"),
        ({"listen": "127.0.0.1:70000"}, "the port must be a number from 0 to 65535"),
        ({"listen": "::1:9464"}, "must be host:port"),
        ({"listen": 9464}, "metrics.listen: must be a string"),
        ({}, "metrics.listen: missing"),
        ({"listen": "127.0.0.1:9464", "port": 1}, "metrics.port: unknown key"),
        ("127.0.0.1:9464", "metrics: must be a table"),
    ],
)
def test_a_wrong_metrics_table_names_its_key(value: object, message: str) -> None:
    with pytest.raises(GatewayError, match=message):
        parse_metrics(value, fail)


def test_the_area_config_carries_the_metrics_address() -> None:
    path = Path("/areas/demo/gateway.toml")
    assert parse_config(BASE, path).metrics is None
    config = parse_config(BASE + '\n[metrics]\nlisten = "127.0.0.1:9464"\n', path)
    assert config.metrics == Listen("127.0.0.1", 9464)
    with pytest.raises(ConfigError, match=r"gateway.toml: metrics.listen: 'x' must be host:port"):
        parse_config(BASE + '\n[metrics]\nlisten = "x"\n', path)


def key(agency: str, use: KeyUse, days: int, revoked: bool = False) -> PublicKeyRecord:
    return PublicKeyRecord(
        key_id=f"{agency}.{use.value}.{days:016x}",
        agency=agency,
        use=use,
        raw=bytes(32),
        not_before=NOW - timedelta(days=400),
        expires=NOW + timedelta(days=days),
        revoked_at=NOW - timedelta(days=1) if revoked else None,
    )


def test_key_expiry_counts_to_the_last_usable_key_not_the_rotated_one() -> None:
    registry = Registry.build(
        [Agency("police", "Police", "police"), Agency("health", "Health", "health")],
        [
            key("police", KeyUse.SIGN, 10),  # rotated: runs out on purpose
            key("police", KeyUse.SIGN, 300),
            key("police", KeyUse.ENCRYPT, -5),  # expired, no successor
            key("health", KeyUse.SIGN, 90, revoked=True),
        ],
    )
    left = metrics.key_expiry_seconds(registry, NOW)
    assert left[("police", "sign", "edge")] == 300 * 86400
    assert left[("police", "encrypt", "edge")] == 0
    assert left[("health", "sign", "edge")] == 0


def test_the_intake_s_key_for_an_agency_counts_apart_from_the_agency_s_own() -> None:
    registry = Registry.build(
        [Agency("police", "Police", "police")],
        [key("police", KeyUse.SIGN, 5), replace(key("police", KeyUse.SIGN, 300), intake=True)],
    )
    left = metrics.key_expiry_seconds(registry, NOW)
    assert left[("police", "sign", "edge")] == 5 * 86400  # not hidden by the intake's later one
    assert left[("police", "sign", "intake")] == 300 * 86400


def exposition() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_deadline_gauges_are_replaced_whole_and_stale_series_disappear() -> None:
    metrics.set_deadline_counts(
        [
            DeadlineCount("police", "response", "Red", open=2, overdue=1, breached=3),
            DeadlineCount("health", "delivery", None, open=1, overdue=0, breached=0),
        ]
    )
    text = exposition()
    assert 'mash_gateway_deadlines_open{agency="police",kind="response",rag="Red"} 2.0' in text
    assert 'mash_gateway_deadlines_breached{agency="health",kind="delivery",rag="none"} 0.0' in text
    assert 'mash_gateway_deadlines_breached{agency="police",kind="response",rag="Red"} 1.0' in text
    metrics.set_deadline_counts([DeadlineCount("police", "response", "Red", 1, 0, 0)])
    text = exposition()
    assert 'mash_gateway_deadlines_open{agency="police",kind="response",rag="Red"} 1.0' in text
    for gauge in ("mash_gateway_deadlines_open", "mash_gateway_deadlines_breached"):
        assert f'{gauge}{{agency="health"' not in text  # the stale series is gone
    metrics.set_deadline_counts([])


def test_unverified_or_unregistered_values_never_become_labels() -> None:
    forged = ClaimedFacts("id-1", "case-1", "rogue-agency", "NotAType")
    metrics.rejected(forged, "made-up-check", known={"police"})
    metrics.rejected(None, "undecodable", known={"police"})
    text = exposition()
    assert "rogue-agency" not in text and "NotAType" not in text and "made-up-check" not in text
    assert 'check="unknown",stage="router"' in text
    assert 'message_type="unknown",outcome="rejected",recipient="unknown",sender="unknown"' in text
