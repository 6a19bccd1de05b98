"""The ``[[adapters]]`` tables of gateway.toml, parsed into frozen values.

Pure: the TOML value in, AdapterConfigs out, or the error that ``fail``
builds naming the key path (``fail`` is the config parser's, so this module
does not import gateway.config.area_config). Layout::

    [[adapters]]
    agency = "police"            # the agency whose keys and broker login it uses
    profile = "police"           # adapters/profiles/<name>, or a folder path
    recipients = ["hub"]         # who inbound documents are sent to
    transport = "filedrop"       # or "http"

    [adapters.filedrop]
    root = "agency-systems/police"   # outbox/ processing/ archive/ error/ inbox/
    poll_seconds = 1.0
    archive_days = 30                # sent files are deleted from archive/ after this

    [adapters.http]
    listen = "127.0.0.1:8441"        # the inbound endpoint; plain HTTP on loopback only:
    tls_cert = "keys/private/csc-http.crt"   # elsewhere TLS (1.2 or later) with this pair
    tls_key = "keys/private/csc-http.key"
    webhook = "https://csc.example/mash"     # outbound: where messages for the agency go
                                     # (http:// only to this machine)
    max_body_bytes = 1048576
    idle_seconds = 15.0              # a request head must arrive within this (and an idle
                                     # keep-alive connection is closed after it)
    body_seconds = 30.0              # the body must arrive within this of the head (else 408)
    attempts = 5                     # webhook POSTs before giving up
    backoff_seconds = 0.5            # doubled after each failure

    [adapters.mesh]
    url = "https://msg.intspineservices.nhs.uk"
    mailbox = "X26ABC1"              # the adapter's own mailbox, polled for inbound
    recipient = "X26ABC2"            # the agency system's mailbox, for outbound
    workflow_id = "MASH_GATEWAY"     # outbound workflow id, unless the type has its own:
    workflows = { InformationRequest = "MASH_INFO_REQUEST", Decision = "MASH_DECISION" }
    root = "agency-systems/health"   # processing/ archive/ error/ pending/ (see mesh.py)
    poll_seconds = 5.0
    track_seconds = 60.0             # how often MESH tracking is asked about sent messages
    archive_days = 30                # received messages are deleted from archive/ after this
    max_chunk_size = 20000000        # bytes per MESH chunk (MESH allows at most 100 MB); one
                                     # chunk is what sending holds in memory
    cert = "keys/private/mesh/health.crt"   # mutual TLS: required unless MESH is on this
    key = "keys/private/mesh/health.key"     # machine (a sandbox), where plain http:// is
    ca = "keys/mesh-ca.pem"                  # allowed too; ca is optional

The MESH password and shared key are not in gateway.toml: they are read from
``<private keys>/mesh/<agency>.password`` and ``.shared-key`` (mode 0600).

Unknown keys are refused, so a misspelt key never silently keeps a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config.config_checks import LOOPBACK_HOSTS, Fail, known, local_path, text
from gateway.config.config_checks import table as as_table

TRANSPORTS = ("filedrop", "http", "mesh")
MESH_MAX_CHUNK = 100 * 1000 * 1000
MESH_CHUNK = 20 * 1000 * 1000
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_IDLE_SECONDS = 15.0
DEFAULT_BODY_SECONDS = 30.0


@dataclass(frozen=True)
class FileDropSettings:
    root: Path
    poll_seconds: float = 1.0
    # archive/ holds copies of what the agency sent (personal data, already on the
    # exchange): kept this long for tracing, then deleted (storage limitation).
    archive_days: float = 30.0


@dataclass(frozen=True)
class HttpSettings:
    host: str
    port: int
    webhook: str
    max_body_bytes: int = DEFAULT_MAX_BODY
    attempts: int = 5
    backoff_seconds: float = 0.5
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Slow clients are cut off (adapters/transports/http_inbound.py).
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    body_seconds: float = DEFAULT_BODY_SECONDS


@dataclass(frozen=True)
class MeshSettings:
    url: str
    mailbox: str
    recipient: str
    workflow_id: str
    root: Path
    workflows: Mapping[str, str] = field(default_factory=dict)
    poll_seconds: float = 5.0
    max_chunk_size: int = MESH_CHUNK
    track_seconds: float = 60.0
    archive_days: float = 30.0
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def workflow_for(self, message_type: str) -> str:
        return self.workflows.get(message_type, self.workflow_id)


@dataclass(frozen=True)
class AdapterConfig:
    agency: str
    profile: str
    recipients: tuple[str, ...]
    transport: str
    filedrop: FileDropSettings | None = None
    http: HttpSettings | None = None
    mesh: MeshSettings | None = None


def parse_adapters(
    value: Any, fail: Fail, base_dir: Path, agencies: frozenset[str]
) -> tuple[AdapterConfig, ...]:
    """Every ``[[adapters]]`` table; none when the key is absent."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail("adapters", "must be an array of tables ([[adapters]])")
    found = tuple(_adapter(i, doc, fail, base_dir, agencies) for i, doc in enumerate(value))
    seen: set[str] = set()
    for index, adapter in enumerate(found):
        if adapter.agency in seen:
            raise fail(f"adapters[{index}].agency", f"{adapter.agency!r} has two adapters")
        seen.add(adapter.agency)
    return found


def _adapter(
    index: int, doc: Any, fail: Fail, base_dir: Path, agencies: frozenset[str]
) -> AdapterConfig:
    key = f"adapters[{index}]"
    table = as_table(doc, key, fail)
    known(table, key, {"agency", "profile", "recipients", "transport", *TRANSPORTS}, fail)
    agency = text(table, key, "agency", fail)
    if agency not in agencies:
        raise fail(f"{key}.agency", f"{agency!r} is not one of the agencies")
    recipients = table.get("recipients")
    if (
        not isinstance(recipients, list)
        or not recipients
        or not all(isinstance(r, str) for r in recipients)
    ):
        raise fail(f"{key}.recipients", "must be a non-empty array of agency ids")
    unknown = [r for r in recipients if r not in agencies]
    if unknown:
        raise fail(f"{key}.recipients", f"{unknown[0]!r} is not one of the agencies")
    transport = text(table, key, "transport", fail)
    if transport not in TRANSPORTS:
        raise fail(f"{key}.transport", f"{transport!r} must be one of {', '.join(TRANSPORTS)}")
    if transport not in table:
        raise fail(f"{key}.{transport}", f"missing table [adapters.{transport}]")
    return AdapterConfig(
        agency=agency,
        profile=text(table, key, "profile", fail),
        recipients=tuple(recipients),
        transport=transport,
        filedrop=_filedrop(table.get("filedrop"), f"{key}.filedrop", fail, base_dir),
        http=_http(table.get("http"), f"{key}.http", fail, base_dir),
        mesh=_mesh(table.get("mesh"), f"{key}.mesh", fail, base_dir),
    )


def _filedrop(value: Any, key: str, fail: Fail, base_dir: Path) -> FileDropSettings | None:
    if value is None:
        return None
    table = as_table(value, key, fail)
    known(table, key, {"root", "poll_seconds", "archive_days"}, fail)
    return FileDropSettings(
        root=local_path(text(table, key, "root", fail), base_dir),
        poll_seconds=_number(table, key, "poll_seconds", 1.0, fail),
        archive_days=_number(table, key, "archive_days", 30.0, fail),
    )


def _http(value: Any, key: str, fail: Fail, base_dir: Path) -> HttpSettings | None:
    if value is None:
        return None
    table = as_table(value, key, fail)
    allowed = {"listen", "webhook", "max_body_bytes", "attempts", "backoff_seconds"}
    allowed |= {"idle_seconds", "body_seconds"}
    known(table, key, allowed | {"tls_cert", "tls_key"}, fail)
    listen = text(table, key, "listen", fail)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise fail(f"{key}.listen", f"{listen!r} must be HOST:PORT, e.g. 127.0.0.1:8441")
    cert, tls_key = (
        local_path(text(table, key, name, fail), base_dir) if name in table else None
        for name in ("tls_cert", "tls_key")
    )
    if (cert is None) != (tls_key is None):
        raise fail(f"{key}.tls_cert", "tls_cert and tls_key go together")
    if cert is None and host.strip("[]") not in LOOPBACK_HOSTS:
        raise fail(
            f"{key}.listen",
            f"plain HTTP only on a loopback address; set tls_cert and tls_key to listen on {host}",
        )
    webhook = text(table, key, "webhook", fail)
    hook = urlsplit(webhook)
    if hook.scheme not in ("http", "https") or not hook.hostname:
        raise fail(f"{key}.webhook", "must be an http:// or https:// URL")
    if hook.scheme == "http" and hook.hostname not in LOOPBACK_HOSTS:
        raise fail(f"{key}.webhook", "must be https:// unless it is on this machine")
    attempts = table.get("attempts", 5)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise fail(f"{key}.attempts", "must be a whole number, at least 1")
    return HttpSettings(
        host=host,
        port=int(port),
        webhook=webhook,
        max_body_bytes=int(_number(table, key, "max_body_bytes", DEFAULT_MAX_BODY, fail)),
        attempts=attempts,
        backoff_seconds=_number(table, key, "backoff_seconds", 0.5, fail),
        tls_cert=cert,
        tls_key=tls_key,
        idle_seconds=_number(table, key, "idle_seconds", DEFAULT_IDLE_SECONDS, fail),
        body_seconds=_number(table, key, "body_seconds", DEFAULT_BODY_SECONDS, fail),
    )


def _mesh(value: Any, key: str, fail: Fail, base_dir: Path) -> MeshSettings | None:
    if value is None:
        return None
    table = as_table(value, key, fail)
    paths = ("root", "cert", "key", "ca")
    allowed = {"url", "mailbox", "recipient", "workflow_id", "workflows", "poll_seconds"}
    allowed |= {"max_chunk_size", "track_seconds", "archive_days"}
    known(table, key, allowed | set(paths), fail)
    url = text(table, key, "url", fail)
    where = urlsplit(url)
    if where.scheme not in ("http", "https") or not where.hostname:
        raise fail(f"{key}.url", "must be an https:// URL")
    on_this_machine = where.hostname in LOOPBACK_HOSTS
    if where.scheme == "http" and not on_this_machine:
        raise fail(f"{key}.url", "must be https:// unless MESH is on this machine (a sandbox)")
    workflows = table.get("workflows", {})
    if not isinstance(workflows, dict) or not all(
        isinstance(v, str) and v for v in workflows.values()
    ):
        raise fail(f"{key}.workflows", "must map message types to workflow ids")
    chunk = _number(table, key, "max_chunk_size", MESH_CHUNK, fail)
    if chunk > MESH_MAX_CHUNK:
        raise fail(f"{key}.max_chunk_size", f"MESH chunks are at most {MESH_MAX_CHUNK} bytes")
    located = {
        name: local_path(text(table, key, name, fail), base_dir) if name in table else None
        for name in paths
    }
    if (located["cert"] is None) != (located["key"] is None):
        raise fail(f"{key}.cert", "cert and key go together (mutual TLS)")
    if located["cert"] is None and not on_this_machine:
        raise fail(
            f"{key}.cert",
            f"missing: MESH at {where.hostname} needs the mailbox's client certificate "
            "(cert and key, mutual TLS)",
        )
    root = located["root"]
    if root is None:
        raise fail(f"{key}.root", "missing")
    return MeshSettings(
        url=url,
        mailbox=text(table, key, "mailbox", fail),
        recipient=text(table, key, "recipient", fail),
        workflow_id=text(table, key, "workflow_id", fail),
        root=root,
        workflows=dict(workflows),
        poll_seconds=_number(table, key, "poll_seconds", 5.0, fail),
        max_chunk_size=int(chunk),
        track_seconds=_number(table, key, "track_seconds", 60.0, fail),
        archive_days=_number(table, key, "archive_days", 30.0, fail),
        cert=located["cert"],
        key=located["key"],
        ca=located["ca"],
    )


def _number(doc: Mapping[str, Any], key: str, name: str, default: float, fail: Fail) -> float:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise fail(f"{key}.{name}", "must be a positive number")
    return float(value)
