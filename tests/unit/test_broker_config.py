"""[broker] transport: TLS settings need amqps://; plain AMQP stays on loopback unless allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config.broker_config import BrokerTls, parse_broker_tls
from gateway.core.errors import GatewayError

pytestmark = pytest.mark.unit


class Refused(GatewayError):
    pass


def fail(key: str, problem: str) -> GatewayError:
    return Refused(f"{key}: {problem}")


def parse(**broker: Any) -> BrokerTls | None:
    return parse_broker_tls(broker, fail, Path("/area"))


def test_plain_amqp_on_loopback_needs_no_tls() -> None:
    assert parse(url="amqp://guest:guest@127.0.0.1:5672/mash") is None
    assert parse(url="amqp://localhost/mash") is None


def test_plain_amqp_off_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(Refused, match=r"broker\.url: plain AMQP to broker\.example"):
        parse(url="amqp://u:p@broker.example:5672/mash")
    assert parse(url="amqp://u:p@rabbitmq:5672/mash", allow_plain=True) is None


def test_amqps_takes_a_ca_and_a_client_pair_relative_to_the_area() -> None:
    tls = parse(url="amqps://broker.example/mash", ca="keys/ca.crt", cert="c.crt", key="c.key")
    assert tls == BrokerTls(Path("/area/keys/ca.crt"), Path("/area/c.crt"), Path("/area/c.key"))
    assert parse(url="amqps://broker.example/mash") == BrokerTls()  # the system's CAs


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        ({"url": "amqps://b/m", "cert": "c.crt"}, r"broker\.cert: cert and key go together"),
        ({"url": "amqp://127.0.0.1/m", "ca": "ca.crt"}, r"broker\.ca: TLS settings need an amqps"),
        ({"url": "http://b/m"}, r"broker\.url: scheme must be amqp or amqps"),
        ({"url": "amqp://b/m", "allow_plain": "yes"}, r"broker\.allow_plain: must be true"),
        ({"url": "amqps://b/m", "cafile": "x"}, r"broker\.cafile: unknown key"),
    ],
)
def test_mistakes_are_named_by_key(broker: dict[str, Any], message: str) -> None:
    with pytest.raises(Refused, match=message):
        parse(**broker)
