"""The ``[metrics]`` table of gateway.toml: where a service serves ``/metrics``.

Pure: the TOML value in, a Listen (or None: metrics off) out, or the error
that ``fail`` builds naming the key path. Layout::

    [metrics]
    listen = "127.0.0.1:9464"     # host:port; "[::1]:9464" for IPv6; port 0 picks a free one

Decisions: absent means off, so an area upgraded from an older release
opens no new port by surprise. Loopback is the documented default: metrics
carry no personal data, but agency names and volumes are the partnership's
business, so a wider address is a deliberate choice (containers need it).
Each service run on one host needs its own port: ``--metrics-listen``
overrides this table per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config.config_checks import Fail, known, table

DEFAULT_PORT = 9464


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_metrics(value: Any, fail: Fail) -> Listen | None:
    """The ``[metrics]`` table's address, or None when the table is absent."""
    if value is None:
        return None
    known(table(value, "metrics", fail), "metrics", {"listen"}, fail)
    return parse_listen(value.get("listen"), "metrics.listen", fail)


def parse_listen(text: Any, key: str, fail: Fail) -> Listen:
    """``host:port`` with a numeric port in 0-65535; an IPv6 host goes in brackets."""
    if not isinstance(text, str) or not text.strip():
        raise fail(key, "missing" if text is None else "must be a string like '127.0.0.1:9464'")
    address = text.strip()
    if address.startswith("["):
        host, sep, port_text = address[1:].partition("]:")
    else:
        host, sep, port_text = address.rpartition(":")
    if not sep or not host or (":" in host and not address.startswith("[")):
        raise fail(key, f"{text!r} must be host:port, e.g. '127.0.0.1:{DEFAULT_PORT}'")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise fail(key, f"{text!r}: the port must be a number from 0 to 65535")
    return Listen(host, int(port_text))
