"""Checks shared by the config sections' pure parsers: each error names its key path.

Every section parser (deadlines, intake, adapters, metrics) takes the raw
TOML value and a ``fail(key, problem)`` callback from gateway.config.area_config, so
errors read alike without those modules importing the config parser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.core.errors import GatewayError

Fail = Callable[[str, str], GatewayError]

# Hosts on this machine: plain HTTP or AMQP to them never crosses a network.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def table(value: Any, key: str, fail: Fail) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise fail(key, "must be a table")
    return value


def known(doc: Mapping[str, Any], key: str, allowed: set[str], fail: Fail) -> None:
    """Refuse unknown keys, so a misspelt one cannot silently leave a default in force."""
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise fail(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def text(
    doc: Mapping[str, Any], key: str, name: str, fail: Fail, default: str | None = None
) -> str:
    """The string at ``key.name``, as written; missing or blank is refused."""
    value = doc.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key}.{name}", "missing" if value is None else "must be a string")
    return value


def local_path(raw: str, base: Path) -> Path:
    """``raw`` as a path; a relative one is anchored at ``base``, the config file's directory."""
    path = Path(raw)
    return path if path.is_absolute() else base / path
