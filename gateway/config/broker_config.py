"""``[broker]``'s transport settings: TLS to RabbitMQ, and plain AMQP only where it is safe.

    [broker]
    url = "amqps://broker.hub.example:5671/mash"
    ca = "keys/broker-ca.crt"          # who signs the broker's certificate (default: system CAs)
    cert = "keys/private/police-broker.crt"   # optional client certificate, with its key
    key = "keys/private/police-broker.key"
    allow_plain = false                # plain amqp:// off loopback only when this says so

Plain ``amqp://`` carries the login and every envelope header in clear, so
it is refused for any host but loopback unless ``allow_plain`` says the
network is trusted (a compose network, say). ``ca``, ``cert`` and ``key``
need ``amqps://``: a CA named for a plain URL is a mistake worth naming.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config.config_checks import LOOPBACK_HOSTS, Fail, known, local_path

BROKER_KEYS = {"url", "user_prefix", "ca", "cert", "key", "allow_plain"}


@dataclass(frozen=True)
class BrokerTls:
    """How to check the broker's certificate and, optionally, prove who we are to it."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def parse_broker_tls(broker: Mapping[str, Any], fail: Fail, base_dir: Path) -> BrokerTls | None:
    """The TLS settings for an ``amqps://`` URL (None for plain AMQP), after the checks above."""
    known(broker, "broker", BROKER_KEYS, fail)
    url = urlsplit(str(broker.get("url", "")))
    paths = {name: _path(broker, name, fail, base_dir) for name in ("ca", "cert", "key")}
    if (paths["cert"] is None) != (paths["key"] is None):
        raise fail("broker.cert", "cert and key go together")
    allow_plain = broker.get("allow_plain", False)
    if not isinstance(allow_plain, bool):
        raise fail("broker.allow_plain", "must be true or false")
    if url.scheme == "amqps":
        return BrokerTls(**paths)
    if url.scheme != "amqp":
        raise fail("broker.url", f"scheme must be amqp or amqps, not {url.scheme!r}")
    named = next((name for name, path in paths.items() if path is not None), None)
    if named:
        raise fail(f"broker.{named}", "TLS settings need an amqps:// url")
    if url.hostname not in LOOPBACK_HOSTS and not allow_plain:
        raise fail(
            "broker.url",
            f"plain AMQP to {url.hostname} sends logins and headers in clear: use amqps:// "
            "(with broker.ca), or set broker.allow_plain = true on a network you trust",
        )
    return None


def _path(broker: Mapping[str, Any], name: str, fail: Fail, base_dir: Path) -> Path | None:
    raw = broker.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise fail(f"broker.{name}", "must be a file path")
    return local_path(raw, base_dir)
