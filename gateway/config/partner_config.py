"""The gateway.toml a partner agency's host receives: the area, less what is not theirs.

Kept: the area, the broker, the agencies and their public keys, revocations,
agreements, deadlines and metrics (an edge needs the registry and the
agreements to seal, open and check). Dropped: ``[intake]`` (the hub's
service, with other agencies' mail settings) and every other agency's
``[[adapters]]`` with its sub-tables. Rewritten: ``[area] private_keys``
to the bundle's own ``keys/private``, ``[store] url`` to a SQLite file of the
edge's own (the router's store stays on the hub), and the broker URL without
a user or password (the edge logs in with its own password file, which
``broker setup`` issued; credentials.py) and without the hub's broker client
certificate (a partner presents its own).

Works on the text, table by table, so comments and key history survive; the
result is loaded again by the caller, so a config this cannot trim is refused,
not written.
"""

from __future__ import annotations

import re
import tomllib
from urllib.parse import urlsplit, urlunsplit

from gateway.config.toml_tables import tables

BUNDLE_PRIVATE_KEYS = "keys/private"
BUNDLE_STORE_URL = "sqlite:///state/edge.db"


def partner_config_text(text: str, agency: str) -> str:
    """``text`` trimmed for ``agency``'s host, as described above."""
    kept: list[str] = []
    adapter_is_theirs = False
    for table in tables(text):
        root = table.name.split(".")[0]
        if root == "intake":
            continue
        if table.name == "adapters":
            adapter_is_theirs = tomllib.loads("".join(table.lines[1:])).get("agency") == agency
        if root == "adapters" and not adapter_is_theirs:
            continue
        lines = table.lines
        if table.name == "area":
            lines = _set(lines, "private_keys", BUNDLE_PRIVATE_KEYS)
        elif table.name == "store":
            lines = _set(lines, "url", BUNDLE_STORE_URL)
        elif table.name == "broker":
            url = tomllib.loads("".join(lines[1:])).get("url")
            if isinstance(url, str):
                lines = _set(lines, "url", without_login(url))
            lines = _drop(lines, "cert", "key")  # the hub's client pair; the partner has its own
        kept.extend(lines)
    return "".join(kept)


def without_login(url: str) -> str:
    """The broker URL with any user and password taken out."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def _drop(lines: list[str], *keys: str) -> list[str]:
    pattern = re.compile(rf"^\s*({'|'.join(map(re.escape, keys))})\s*=")
    return [line for line in lines if not pattern.match(line)]


def _set(lines: list[str], key: str, value: str) -> list[str]:
    """``lines`` (a table, header first) with ``key = "value"``, replaced or added."""
    assignment = f'{key} = "{value}"\n'
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    if any(pattern.match(line) for line in lines):
        return [assignment if pattern.match(line) else line for line in lines]
    return [lines[0], assignment, *lines[1:]]
