"""The ``[intake]`` table of gateway.toml, parsed into an IntakeConfig.

Pure: the TOML value in, frozen values out, or the error ``fail`` builds
naming the key path (the config parser's callback, as in deadline_config).
Relative paths are anchored at the config file's directory (``base``).

Layout::

    [intake]
    listen = "127.0.0.1:8025"            # port 0: any free port
    hostname = "intake.demo.example"      # EHLO name, and the domain of our addresses
    mailboxes = ["hub"]                   # agencies mail may be addressed to: hub@<hostname>
    tls_cert = "keys/private/intake/tls.crt"
    tls_key = "keys/private/intake/tls.key"
    gnupg_home = "keys/private/gnupg"
    reply_key = "keys/private/intake/reply-token.key"   # HMAC key of reply-token addresses
    max_message_bytes = 10485760
    command_timeout_seconds = 60
    session_timeout_seconds = 600
    max_connections = 256

    [[intake.domains]]
    domain = "police.demo.example"
    agency = "police"
    policy = "pgp"                        # or "tls" (accredited domain, lower assurance)
    staff = [{ address = "pc.smith@police.demo.example", fingerprint = "0123...ABCD" }]
    inbox = false                         # true: an e-mail-only agency; the intake takes its
                                          # inbox and mails non-delivery notices to senders

    [intake.relay]                        # optional: acknowledgements and notices go out here
    host = "127.0.0.1"
    port = 25
    starttls = true
    sender = "mash-intake@intake.demo.example"
    ca_file = "keys/relay-ca.pem"         # optional: the CA that signed the relay's certificate

Decisions: unknown keys are refused (a misspelt limit must not leave a
default in force); a domain may appear once; fingerprints are stored
upper-case without spaces, as gpg reports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.config.config_checks import Fail, known, table

FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")

DEFAULT_TLS_CERT = "keys/private/intake/tls.crt"
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEFAULT_COMMAND_TIMEOUT = 60.0
DEFAULT_SESSION_TIMEOUT = 600.0
DEFAULT_MAX_CONNECTIONS = 256


class Policy(StrEnum):
    PGP = "pgp"  # PGP/MIME signature pinned to staff: assurance pgp-verified
    TLS = "tls"  # accredited domain trusted on TLS alone: assurance tls-only


@dataclass(frozen=True)
class Staff:
    address: str  # lower-case
    fingerprint: str  # upper-case hex, no spaces


@dataclass(frozen=True)
class DomainRule:
    domain: str
    agency: str
    policy: Policy
    staff: tuple[Staff, ...]
    inbox: bool = False  # an e-mail-only agency: the intake takes its inbox and mails notices

    def staff_by_fingerprint(self, fingerprint: str) -> Staff | None:
        wanted = fingerprint.upper()
        return next((s for s in self.staff if s.fingerprint == wanted), None)


@dataclass(frozen=True)
class Relay:
    host: str
    port: int
    starttls: bool
    sender: str
    ca_file: Path | None  # verify the relay's certificate against this CA (default: system CAs)


@dataclass(frozen=True)
class IntakeConfig:
    host: str
    port: int
    hostname: str
    mailboxes: frozenset[str]
    tls_cert: Path
    tls_key: Path
    gnupg_home: Path
    reply_key: Path
    max_message_bytes: int
    command_timeout: float
    session_timeout: float
    max_connections: int
    domains: tuple[DomainRule, ...]
    relay: Relay | None

    def rule_for(self, domain: str) -> DomainRule | None:
        wanted = domain.lower()
        return next((d for d in self.domains if d.domain == wanted), None)


_KEYS = {
    "listen",
    "hostname",
    "mailboxes",
    "tls_cert",
    "tls_key",
    "gnupg_home",
    "reply_key",
    "max_message_bytes",
    "command_timeout_seconds",
    "session_timeout_seconds",
    "max_connections",
    "domains",
    "relay",
}


def parse_intake(
    value: Any, fail: Fail, base: Path, agencies: frozenset[str]
) -> IntakeConfig | None:
    """The intake settings, or None when the area has no ``[intake]`` table."""
    if value is None:
        return None
    doc = table(value, "intake", fail)
    known(doc, "intake", _KEYS, fail)
    host, port = _listen(doc.get("listen", "127.0.0.1:8025"), fail)
    hostname = _text(doc, "intake", "hostname", fail).lower()
    if not DOMAIN.fullmatch(hostname):
        raise fail("intake.hostname", f"{hostname!r} is not a domain name")
    mailboxes = doc.get("mailboxes", ["hub"])
    if not isinstance(mailboxes, list) or not mailboxes:
        raise fail("intake.mailboxes", "must be a non-empty array of agency ids")
    for index, box in enumerate(mailboxes):
        if box not in agencies:
            raise fail(f"intake.mailboxes[{index}]", f"{box!r} is not one of the agencies")
    domains_value = doc.get("domains", [])
    if not isinstance(domains_value, list):
        raise fail("intake.domains", "must be an array of tables")
    domains = tuple(_domain(i, d, fail, agencies) for i, d in enumerate(domains_value))
    names = [d.domain for d in domains]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise fail(f"intake.domains[{index}].domain", f"{name!r} appears twice")
    relay = _relay(doc.get("relay"), fail, base)
    for index, rule in enumerate(domains):
        if rule.inbox and relay is None:
            raise fail(f"intake.domains[{index}].inbox", "needs [intake.relay] to mail notices")
    return IntakeConfig(
        host=host,
        port=port,
        hostname=hostname,
        mailboxes=frozenset(mailboxes),
        tls_cert=_path(doc, "tls_cert", DEFAULT_TLS_CERT, base, fail),
        tls_key=_path(doc, "tls_key", "keys/private/intake/tls.key", base, fail),
        gnupg_home=_path(doc, "gnupg_home", "keys/private/gnupg", base, fail),
        reply_key=_path(doc, "reply_key", "keys/private/intake/reply-token.key", base, fail),
        max_message_bytes=_positive(doc, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES, fail),
        command_timeout=float(
            _positive(doc, "command_timeout_seconds", int(DEFAULT_COMMAND_TIMEOUT), fail)
        ),
        session_timeout=float(
            _positive(doc, "session_timeout_seconds", int(DEFAULT_SESSION_TIMEOUT), fail)
        ),
        max_connections=_positive(doc, "max_connections", DEFAULT_MAX_CONNECTIONS, fail),
        domains=domains,
        relay=relay,
    )


def _text(doc: Mapping[str, Any], key: str, name: str, fail: Fail) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key}.{name}", "missing" if value is None else "must be a string")
    return value.strip()


def _positive(doc: Mapping[str, Any], name: str, default: int, fail: Fail) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise fail(f"intake.{name}", f"{value!r} must be a positive whole number")
    return value


def _path(doc: Mapping[str, Any], name: str, default: str, base: Path, fail: Fail) -> Path:
    raw = doc.get(name, default)
    if not isinstance(raw, str) or not raw:
        where = "intake.relay" if name == "ca_file" else "intake"
        raise fail(f"{where}.{name}", "must be a path")
    path = Path(raw)
    return path if path.is_absolute() else base / path


def _listen(value: Any, fail: Fail) -> tuple[str, int]:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise fail("intake.listen", f"{value!r} must be HOST:PORT, e.g. '127.0.0.1:8025'")
    return host, int(port)


def _domain(index: int, value: Any, fail: Fail, agencies: frozenset[str]) -> DomainRule:
    key = f"intake.domains[{index}]"
    doc = table(value, key, fail)
    known(doc, key, {"domain", "agency", "policy", "staff", "inbox"}, fail)
    domain = _text(doc, key, "domain", fail).lower()
    if not DOMAIN.fullmatch(domain):
        raise fail(f"{key}.domain", f"{domain!r} is not a domain name")
    agency = _text(doc, key, "agency", fail)
    if agency not in agencies:
        raise fail(f"{key}.agency", f"{agency!r} is not one of the agencies")
    policy_text = _text(doc, key, "policy", fail)
    if policy_text not in {p.value for p in Policy}:
        raise fail(f"{key}.policy", f"{policy_text!r} must be 'pgp' or 'tls'")
    staff_value = doc.get("staff", [])
    if not isinstance(staff_value, list):
        raise fail(f"{key}.staff", "must be an array of {{ address, fingerprint }} tables")
    staff = tuple(_staff(f"{key}.staff[{i}]", s, domain, fail) for i, s in enumerate(staff_value))
    inbox = doc.get("inbox", False)
    if not isinstance(inbox, bool):
        raise fail(f"{key}.inbox", "must be true or false")
    return DomainRule(domain, agency, Policy(policy_text), staff, inbox)


def _staff(key: str, value: Any, domain: str, fail: Fail) -> Staff:
    doc = table(value, key, fail)
    known(doc, key, {"address", "fingerprint"}, fail)
    address = _text(doc, key, "address", fail).lower()
    if not ADDRESS.fullmatch(address) or address.rpartition("@")[2] != domain:
        raise fail(f"{key}.address", f"{address!r} must be an address at {domain}")
    fingerprint = _text(doc, key, "fingerprint", fail).replace(" ", "").upper()
    if not FINGERPRINT.fullmatch(fingerprint):
        raise fail(f"{key}.fingerprint", "must be a full OpenPGP fingerprint (40 hex digits)")
    return Staff(address, fingerprint)


def _relay(value: Any, fail: Fail, base: Path) -> Relay | None:
    if value is None:
        return None
    doc = table(value, "intake.relay", fail)
    known(doc, "intake.relay", {"host", "port", "starttls", "sender", "ca_file"}, fail)
    port = doc.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise fail("intake.relay.port", f"{port!r} must be a port number")
    starttls = doc.get("starttls", True)
    if not isinstance(starttls, bool):
        raise fail("intake.relay.starttls", "must be true or false")
    sender = _text(doc, "intake.relay", "sender", fail)
    if not ADDRESS.fullmatch(sender):
        raise fail("intake.relay.sender", f"{sender!r} is not an e-mail address")
    ca_file = _path(doc, "ca_file", "", base, fail) if "ca_file" in doc else None
    return Relay(_text(doc, "intake.relay", "host", fail), port, starttls, sender, ca_file)
