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
    max_recipients = 100                  # RCPT TO per transaction; past it 452 4.5.3
    replay_window_days = 14               # how long an accepted mail is remembered, and the
                                          # oldest signature accepted
    replay_store = "state/intake-replay.db"

    [[intake.domains]]
    domain = "police.demo.example"
    agency = "police"
    policy = "pgp"                        # or "tls" (accredited domain, lower assurance)
    staff = [{ address = "pc.smith@police.demo.example", fingerprint = "0123...ABCD" }]
    inbox = false                         # true: an e-mail-only agency; the intake takes its
                                          # inbox and mails non-delivery notices to senders

    [[intake.domains]]
    domain = "health.demo.example"
    agency = "health"
    policy = "tls"
    authenticate = ["dkim"]               # "dkim", "client-certificate" or both: all must pass
    dkim_keys = [{ selector = "mail2026", public_key = "MIIBIjAN...", key_type = "rsa" }]
                                          # pinned keys; without them the key is read from DNS
    client_ca = "keys/partners/health-ca.pem"   # the CA of the partner's server certificate
    client_certificates = ["3F9A...07C1"]       # SHA-256 of that certificate (DER)

    [intake.relay]                        # optional: acknowledgements and notices go out here
    host = "127.0.0.1"
    port = 25
    starttls = true
    sender = "mash-intake@intake.demo.example"
    ca_file = "keys/relay-ca.pem"         # optional: the CA that signed the relay's certificate

Decisions: unknown keys are refused (a misspelt limit must not leave a
default in force); a domain may appear once; fingerprints are stored
upper-case without spaces or colons, as gpg reports them; a `tls` domain
must name how its mail is authenticated (there is no anonymous `tls`), and
a pinned DKIM RSA key under 2048 bits is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from gateway.config.config_checks import Fail, known, local_path, table, text

FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
SHA256_FINGERPRINT = re.compile(r"[0-9A-F]{64}")
LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
SELECTOR = re.compile(rf"{LABEL}(\.{LABEL})*")
DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")

DEFAULT_TLS_CERT = "keys/private/intake/tls.crt"
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEFAULT_COMMAND_TIMEOUT = 60.0
DEFAULT_SESSION_TIMEOUT = 600.0
DEFAULT_MAX_CONNECTIONS = 256
# RFC 5321 section 4.5.3.1.8: a server must take at least 100 recipients in one transaction.
DEFAULT_MAX_RECIPIENTS = 100
# Longer than a sending MTA's retry schedule (RFC 5321 section 4.5.4.1: 4-5 days).
DEFAULT_REPLAY_WINDOW_DAYS = 14
DEFAULT_REPLAY_STORE = "state/intake-replay.db"
DKIM_MIN_RSA_BITS = 2048  # RFC 8301 allows 1024; safeguarding mail deserves more
DKIM_KEY_TYPES = ("rsa", "ed25519")


class Policy(StrEnum):
    PGP = "pgp"  # PGP/MIME signature pinned to staff: assurance pgp-verified
    TLS = "tls"  # accredited domain trusted on TLS alone: assurance tls-only


class Authentication(StrEnum):
    """How a `tls` domain's mail proves where it came from."""

    DKIM = "dkim"  # a DKIM signature by the From domain (d= equal to it)
    CLIENT_CERTIFICATE = "client-certificate"  # the partner's mail server's pinned certificate


@dataclass(frozen=True)
class DkimKey:
    """A pinned DKIM key: what the domain publishes at ``<selector>._domainkey.<domain>``."""

    selector: str  # lower-case
    public_key: str  # the p= value: base64 of the key
    key_type: str  # the k= value: "rsa" or "ed25519"

    @property
    def record(self) -> str:
        """The DNS TXT record this pin stands in for."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key}"


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
    authenticate: frozenset[Authentication] = frozenset()  # `tls` only: every one must pass
    dkim_keys: tuple[DkimKey, ...] = ()  # pinned; none: the key is looked up in DNS
    client_ca: Path | None = None  # a CA the partner's server certificate chains to
    client_certificates: frozenset[str] = frozenset()  # SHA-256 of each (DER), upper-case hex

    def __post_init__(self) -> None:
        """No anonymous `tls` domain, however the rule was made: deny by default."""
        if self.policy is Policy.TLS and not self.authenticate:
            raise ValueError(
                f"{self.domain}: a 'tls' domain must name how its mail is authenticated"
            )
        if Authentication.CLIENT_CERTIFICATE in self.authenticate and not self.client_certificates:
            raise ValueError(
                f"{self.domain}: client-certificate authentication pins no certificate"
            )

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
    max_recipients: int
    replay_window: timedelta
    replay_store: Path
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
    "max_recipients",
    "replay_window_days",
    "replay_store",
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
    hostname = text(doc, "intake", "hostname", fail).strip().lower()
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
    domains = tuple(_domain(i, d, fail, agencies, base) for i, d in enumerate(domains_value))
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
        max_recipients=_positive(doc, "max_recipients", DEFAULT_MAX_RECIPIENTS, fail),
        replay_window=timedelta(
            days=_positive(doc, "replay_window_days", DEFAULT_REPLAY_WINDOW_DAYS, fail)
        ),
        replay_store=_path(doc, "replay_store", DEFAULT_REPLAY_STORE, base, fail),
        domains=domains,
        relay=relay,
    )


def _positive(doc: Mapping[str, Any], name: str, default: int, fail: Fail) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise fail(f"intake.{name}", f"{value!r} must be a positive whole number")
    return value


def _path(
    doc: Mapping[str, Any], name: str, default: str, base: Path, fail: Fail, where: str = "intake"
) -> Path:
    raw = doc.get(name, default)
    if not isinstance(raw, str) or not raw:
        raise fail(f"{where}.{name}", "must be a path")
    return local_path(raw, base)


def _listen(value: Any, fail: Fail) -> tuple[str, int]:
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise fail("intake.listen", f"{value!r} must be HOST:PORT, e.g. '127.0.0.1:8025'")
    return host, int(port)


_AUTHENTICATION_KEYS = ("authenticate", "dkim_keys", "client_ca", "client_certificates")


def _domain(index: int, value: Any, fail: Fail, agencies: frozenset[str], base: Path) -> DomainRule:
    key = f"intake.domains[{index}]"
    doc = table(value, key, fail)
    known(doc, key, {"domain", "agency", "policy", "staff", "inbox", *_AUTHENTICATION_KEYS}, fail)
    domain = text(doc, key, "domain", fail).strip().lower()
    if not DOMAIN.fullmatch(domain):
        raise fail(f"{key}.domain", f"{domain!r} is not a domain name")
    agency = text(doc, key, "agency", fail).strip()
    if agency not in agencies:
        raise fail(f"{key}.agency", f"{agency!r} is not one of the agencies")
    policy_text = text(doc, key, "policy", fail).strip()
    if policy_text not in {p.value for p in Policy}:
        raise fail(f"{key}.policy", f"{policy_text!r} must be 'pgp' or 'tls'")
    staff_value = doc.get("staff", [])
    if not isinstance(staff_value, list):
        raise fail(f"{key}.staff", "must be an array of {{ address, fingerprint }} tables")
    staff = tuple(_staff(f"{key}.staff[{i}]", s, domain, fail) for i, s in enumerate(staff_value))
    inbox = doc.get("inbox", False)
    if not isinstance(inbox, bool):
        raise fail(f"{key}.inbox", "must be true or false")
    policy = Policy(policy_text)
    if policy is Policy.PGP:
        for name in _AUTHENTICATION_KEYS:
            if name in doc:
                raise fail(f"{key}.{name}", "only for policy 'tls' (a pgp domain's staff sign)")
        return DomainRule(domain, agency, policy, staff, inbox)
    methods = _authenticate(doc.get("authenticate"), key, fail)
    dkim_keys = _dkim_keys(doc.get("dkim_keys", []), key, fail)
    if "dkim_keys" in doc and Authentication.DKIM not in methods:
        raise fail(f"{key}.dkim_keys", "set, but authenticate does not name 'dkim'")
    certificates = _certificates(doc.get("client_certificates"), key, fail)
    client_ca = _path(doc, "client_ca", "", base, fail, key) if "client_ca" in doc else None
    by_certificate = Authentication.CLIENT_CERTIFICATE in methods
    if by_certificate and not certificates:
        raise fail(
            f"{key}.client_certificates",
            "missing: the SHA-256 fingerprints of the partner's mail server certificates",
        )
    if not by_certificate and (certificates or client_ca is not None):
        name = "client_certificates" if certificates else "client_ca"
        raise fail(f"{key}.{name}", "set, but authenticate does not name 'client-certificate'")
    return DomainRule(
        domain, agency, policy, staff, inbox, methods, dkim_keys, client_ca, certificates
    )


def _authenticate(value: Any, key: str, fail: Fail) -> frozenset[Authentication]:
    choices = ", ".join(f"'{m.value}'" for m in Authentication)
    if value is None:
        raise fail(
            f"{key}.authenticate",
            f"missing: a 'tls' domain's mail must be authenticated by {choices} or both",
        )
    if not isinstance(value, list) or not value:
        raise fail(f"{key}.authenticate", f"must be a non-empty array of {choices}")
    methods = []
    for position, method in enumerate(value):
        if method not in {m.value for m in Authentication}:
            raise fail(f"{key}.authenticate[{position}]", f"{method!r} must be one of {choices}")
        if method in methods:
            raise fail(f"{key}.authenticate[{position}]", f"{method!r} appears twice")
        methods.append(method)
    return frozenset(Authentication(m) for m in methods)


def _dkim_keys(value: Any, key: str, fail: Fail) -> tuple[DkimKey, ...]:
    if not isinstance(value, list):
        raise fail(f"{key}.dkim_keys", "must be an array of { selector, public_key } tables")
    keys = tuple(_dkim_key(f"{key}.dkim_keys[{i}]", v, fail) for i, v in enumerate(value))
    selectors = [k.selector for k in keys]
    for position, selector in enumerate(selectors):
        if selectors.index(selector) != position:
            raise fail(f"{key}.dkim_keys[{position}].selector", f"{selector!r} appears twice")
    return keys


def _dkim_key(key: str, value: Any, fail: Fail) -> DkimKey:
    doc = table(value, key, fail)
    known(doc, key, {"selector", "public_key", "key_type"}, fail)
    selector = text(doc, key, "selector", fail).strip().lower()
    if not SELECTOR.fullmatch(selector):
        raise fail(f"{key}.selector", f"{selector!r} is not a DKIM selector (DNS labels)")
    key_type = doc.get("key_type", "rsa")
    if key_type not in DKIM_KEY_TYPES:
        raise fail(f"{key}.key_type", f"{key_type!r} must be 'rsa' or 'ed25519'")
    public_key = "".join(text(doc, key, "public_key", fail).split())
    problem = _dkim_key_problem(public_key, key_type)
    if problem is not None:
        raise fail(f"{key}.public_key", problem)
    return DkimKey(selector, public_key, key_type)


def _dkim_key_problem(public_key: str, key_type: str) -> str | None:
    """What is wrong with a p= value, as the domain's DNS record would carry it; None if fine."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except (binascii.Error, ValueError):
        return "must be the base64 p= value of the domain's DKIM record"
    if key_type == "ed25519":
        return None if len(raw) == 32 else "an ed25519 DKIM key is 32 bytes (RFC 8463)"
    try:
        loaded = load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        return "is not an RSA public key (SubjectPublicKeyInfo, as in the DKIM record)"
    if not isinstance(loaded, rsa.RSAPublicKey):
        return "is not an RSA public key (SubjectPublicKeyInfo, as in the DKIM record)"
    if loaded.key_size < DKIM_MIN_RSA_BITS:
        return f"a {loaded.key_size}-bit RSA key is too weak; {DKIM_MIN_RSA_BITS} bits or more"
    return None


def _certificates(value: Any, key: str, fail: Fail) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise fail(f"{key}.client_certificates", "must be an array of SHA-256 fingerprints")
    pins = set()
    for position, pin in enumerate(value):
        text = pin.replace(":", "").replace(" ", "").upper() if isinstance(pin, str) else ""
        if not SHA256_FINGERPRINT.fullmatch(text):
            raise fail(
                f"{key}.client_certificates[{position}]",
                "must be a certificate's SHA-256 fingerprint (64 hex digits, colons allowed)",
            )
        pins.add(text)
    return frozenset(pins)


def _staff(key: str, value: Any, domain: str, fail: Fail) -> Staff:
    doc = table(value, key, fail)
    known(doc, key, {"address", "fingerprint"}, fail)
    address = text(doc, key, "address", fail).strip().lower()
    if not ADDRESS.fullmatch(address) or address.rpartition("@")[2] != domain:
        raise fail(f"{key}.address", f"{address!r} must be an address at {domain}")
    fingerprint = text(doc, key, "fingerprint", fail).strip().replace(" ", "").upper()
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
    sender = text(doc, "intake.relay", "sender", fail).strip()
    if not ADDRESS.fullmatch(sender):
        raise fail("intake.relay.sender", f"{sender!r} is not an e-mail address")
    ca_file = _path(doc, "ca_file", "", base, fail, "intake.relay") if "ca_file" in doc else None
    return Relay(text(doc, "intake.relay", "host", fail).strip(), port, starttls, sender, ca_file)
