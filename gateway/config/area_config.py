"""The area configuration (`gateway.toml`): parsed and checked into frozen values.

``parse_config`` is pure: a TOML document in, an AreaConfig out, or a
ConfigError naming the key path that is wrong. ``load_config`` is the thin
shell that finds and reads the file.

Layout decisions:
- keys and revocations are top-level ``[[keys]]`` / ``[[revocations]]``
  arrays with an ``agency`` field, so `mash-gateway keys` only ever appends
  to the file: the registry history stays readable and diffable.
- relative paths are relative to the config file's directory.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config.adapter_config import AdapterConfig, parse_adapters
from gateway.config.broker_config import BrokerTls, parse_broker_tls
from gateway.config.config_checks import local_path, text
from gateway.config.deadline_config import parse_deadlines
from gateway.config.intake_config import IntakeConfig, parse_intake
from gateway.config.limits_config import parse_limits
from gateway.config.metrics_config import Listen, parse_metrics
from gateway.config.quarantine_config import parse_quarantine
from gateway.config.toml_tables import with_directory
from gateway.core import area_directory, vocabulary
from gateway.core.area_directory import Directory
from gateway.core.attachments import AttachmentLimits
from gateway.core.deadlines import DeadlinePolicy
from gateway.core.errors import GatewayError
from gateway.core.quarantine import DEFAULT_POLICY, Policy
from gateway.core.registry import Agency, KeyUse, PublicKeyRecord, Registry, key_id_for
from gateway.core.sharing import Agreement

CONFIG_ENV = "MASH_GATEWAY_CONFIG"
# RabbitMQ users are <prefix><principal id>. The prefix names the area, so two
# areas on one broker never share a user: [broker].user_prefix, by default
# "mash-<area id>-". Safe in a URL, an argv and a log line.
USER_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")

DEFAULT_CONFIG_NAME = "gateway.toml"
DIRECTORY_FILE = "directory.signed"

AGENCY_ID = re.compile(r"[a-z][a-z0-9-]{1,31}")
RAW_KEY_BYTES = 32


class ConfigError(GatewayError):
    """The configuration is missing, unreadable or wrong; the message names the key."""


@dataclass(frozen=True)
class AreaConfig:
    path: Path
    area_id: str
    area_name: str
    hub: str
    gateway: str
    private_keys_dir: Path
    broker_url: str
    broker_user_prefix: str
    store_url: str
    registry: Registry
    agreements: tuple[Agreement, ...]
    deadlines: DeadlinePolicy
    intake: IntakeConfig | None = None
    adapters: tuple[AdapterConfig, ...] = ()
    metrics: Listen | None = None
    broker_tls: BrokerTls | None = None  # None: plain AMQP (broker_config.py says when allowed)
    directory_version: int = 0  # of the signed area directory in force; 0: the file's own tables
    limits: AttachmentLimits = field(default_factory=AttachmentLimits)
    quarantine: Policy = DEFAULT_POLICY

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def inbox_agencies(self) -> list[str]:
        """The agencies with an inbox: everyone but the gateway principal."""
        return sorted(a for a in self.registry.agencies if a != self.gateway)

    def gateway_key(self, key_id: str, at: datetime) -> Ed25519PublicKey:
        """The gateway principal's verifying key ``key_id`` as of ``at``: what signs the
        area directory."""
        return self.registry.verifying_key(key_id, self.gateway, at)


def default_user_prefix(area_id: str) -> str:
    """The RabbitMQ user prefix an area gets unless ``[broker].user_prefix`` names one."""
    return f"mash-{area_id}-"


def find_config(explicit: str | None) -> Path:
    """--config, then $MASH_GATEWAY_CONFIG, then ./gateway.toml."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    return Path(chosen)


def load_config(explicit: str | None = None) -> AreaConfig:
    path = find_config(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file (use --config, ${CONFIG_ENV}, "
            "or create one with `mash-gateway init DIR`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    config = parse_config(text, path.resolve())
    directory = held_directory(config)
    if directory is None:
        return config
    return replace(
        parse_config(with_directory(text, directory.tables), path.resolve()),
        directory_version=directory.version,
    )


def directory_path(config: AreaConfig) -> Path:
    """Where a host keeps the last area directory it accepted (services/directory_watch.py)."""
    return config.base_dir / "state" / DIRECTORY_FILE


def held_directory(config: AreaConfig) -> Directory | None:
    """The accepted directory this host holds, checked again against its own config's gateway
    keys; None when it holds none. One that no longer checks out is refused by name."""
    path = directory_path(config)
    try:
        document, signature = area_directory.from_stored(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the held directory: {exc.strerror}") from None
    try:
        directory = area_directory.accept(
            document,
            signature,
            area=config.area_id,
            held_version=0,
            gateway_key=config.gateway_key,
        )
    except area_directory.DirectoryRefused as exc:
        raise ConfigError(f"{path}: {exc}; delete it to fall back to {config.path.name}") from None
    return directory


def parse_config(text: str, path: Path) -> AreaConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _Parser(path).area(doc)


class _Parser:
    """Walks the TOML tree keeping the key path, so every error names its key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}")

    def table(self, doc: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
        value = doc.get(name)
        if not isinstance(value, dict):
            raise self.fail(key, "missing table" if value is None else "must be a table")
        return value

    def array(self, doc: Mapping[str, Any], name: str, *, required: bool) -> list[Any]:
        value = doc.get(name)
        if value is None and not required:
            return []
        if not isinstance(value, list) or not value:
            raise self.fail(name, "must be a non-empty array of tables")
        return value

    def text(self, doc: Mapping[str, Any], key: str, name: str, default: str | None = None) -> str:
        return text(doc, key, name, self.fail, default)

    def strings(
        self,
        doc: Mapping[str, Any],
        key: str,
        name: str,
        allowed: frozenset[str] | None,
        *,
        required: bool = True,
    ) -> frozenset[str]:
        value = doc.get(name, None if required else [])
        where = f"{key}.{name}"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, "missing" if value is None else "must be an array of strings")
        if required and not value:
            raise self.fail(where, "must not be empty")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.fail(
                    where, f"unknown value {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
                )
        return frozenset(value)

    def instant(
        self, doc: Mapping[str, Any], key: str, name: str, *, required: bool = True
    ) -> datetime | None:
        value = doc.get(name)
        where = f"{key}.{name}"
        if value is None:
            if required:
                raise self.fail(where, "missing")
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self.fail(where, "must be a date-time with a zone, e.g. 2026-11-23T09:00:00Z")
        return value.astimezone(UTC)

    def day(self, doc: Mapping[str, Any], key: str, name: str) -> date:
        value = doc.get(name)
        if not isinstance(value, date) or isinstance(value, datetime):
            raise self.fail(f"{key}.{name}", "must be a date, e.g. 2026-04-01")
        return value

    def area(self, doc: Mapping[str, Any]) -> AreaConfig:
        area = self.table(doc, "area", "area")
        broker = self.table(doc, "broker", "broker")
        store = self.table(doc, "store", "store")
        agencies = [
            self.agency(i, a) for i, a in enumerate(self.array(doc, "agencies", required=True))
        ]
        ids = [a.id for a in agencies]
        duplicate = next((a for a in ids if ids.count(a) > 1), None)
        if duplicate:
            raise self.fail("agencies", f"agency id {duplicate!r} appears twice")
        known = frozenset(ids)
        hub = self.text(area, "area", "hub")
        if hub not in known:
            raise self.fail("area.hub", f"{hub!r} is not one of the agencies")
        gateway = self.text(area, "area", "gateway", "gateway")
        if gateway not in known or agencies[ids.index(gateway)].kind != "gateway":
            raise self.fail("area.gateway", f"{gateway!r} must name an agency of kind 'gateway'")
        revocations = self.revocations(doc)
        keys = [
            self.key(i, k, known, revocations)
            for i, k in enumerate(self.array(doc, "keys", required=False))
        ]
        unknown_revoked = sorted(set(revocations) - {k.key_id for k in keys})
        if unknown_revoked:
            raise self.fail("revocations", f"revokes unknown key id {unknown_revoked[0]!r}")
        agreements = tuple(
            self.agreement(i, a, known - {gateway})
            for i, a in enumerate(self.array(doc, "agreements", required=False))
        )
        return AreaConfig(
            path=self.path,
            area_id=self.text(area, "area", "id"),
            area_name=self.text(area, "area", "name"),
            hub=hub,
            gateway=gateway,
            private_keys_dir=local_path(
                self.text(area, "area", "private_keys", "keys/private"), self.path.parent
            ),
            broker_url=self.text(broker, "broker", "url"),
            broker_user_prefix=self.user_prefix(broker, area),
            store_url=self.store_url(self.text(store, "store", "url")),
            registry=Registry.build(agencies, keys),
            agreements=agreements,
            deadlines=self.deadlines(doc, known - {gateway}),
            intake=parse_intake(doc.get("intake"), self.fail, self.path.parent, known - {gateway}),
            adapters=parse_adapters(
                doc.get("adapters"), self.fail, self.path.parent, known - {gateway}
            ),
            metrics=parse_metrics(doc.get("metrics"), self.fail),
            broker_tls=parse_broker_tls(broker, self.fail, self.path.parent),
            limits=parse_limits(doc.get("limits"), self.fail),
            quarantine=parse_quarantine(doc.get("quarantine"), self.fail),
        )

    def deadlines(self, doc: Mapping[str, Any], agencies: frozenset[str]) -> DeadlinePolicy:
        policy = parse_deadlines(doc.get("deadlines"), self.fail)
        for index, contact in enumerate(policy.contacts):
            if contact.agency not in agencies:
                raise self.fail(
                    f"deadlines.contacts[{index}].agency",
                    f"{contact.agency!r} is not one of the agencies",
                )
        return policy

    def user_prefix(self, broker: Mapping[str, Any], area: Mapping[str, Any]) -> str:
        """``[broker].user_prefix``, or one derived from the area id; refused unless safe."""
        if "user_prefix" in broker:
            prefix = self.text(broker, "broker", "user_prefix")
            where, fix = "broker.user_prefix", ""
        else:
            prefix = default_user_prefix(self.text(area, "area", "id"))
            where, fix = "area.id", "; set [broker].user_prefix to name this area's RabbitMQ users"
        if not USER_PREFIX.fullmatch(prefix):
            raise self.fail(
                where, f"RabbitMQ user prefix {prefix!r} must match {USER_PREFIX.pattern}{fix}"
            )
        return prefix

    def store_url(self, url: str) -> str:
        """Anchor a relative sqlite path to the config directory."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(local_path(url[len(prefix) :], self.path.parent))
        return url

    def agency(self, index: int, doc: Any) -> Agency:
        key = f"agencies[{index}]"
        if not isinstance(doc, dict):
            raise self.fail(key, "must be a table")
        agency_id = self.text(doc, key, "id")
        if not AGENCY_ID.fullmatch(agency_id):
            raise self.fail(f"{key}.id", f"{agency_id!r} must match {AGENCY_ID.pattern}")
        kind = self.text(doc, key, "kind")
        if kind not in vocabulary.agency_kinds():
            raise self.fail(
                f"{key}.kind",
                f"unknown kind {kind!r} (allowed: {', '.join(sorted(vocabulary.agency_kinds()))})",
            )
        contacts = self.strings(doc, key, "contacts", None, required=False)
        return Agency(agency_id, self.text(doc, key, "name"), kind, tuple(sorted(contacts)))

    def revocations(self, doc: Mapping[str, Any]) -> dict[str, tuple[datetime, str]]:
        found: dict[str, tuple[datetime, str]] = {}
        for index, rev in enumerate(self.array(doc, "revocations", required=False)):
            key = f"revocations[{index}]"
            if not isinstance(rev, dict):
                raise self.fail(key, "must be a table")
            at = self.instant(rev, key, "revoked_at")
            assert at is not None
            found[self.text(rev, key, "key_id")] = (at, self.text(rev, key, "reason"))
        return found

    def key(
        self,
        index: int,
        doc: Any,
        agencies: frozenset[str],
        revocations: Mapping[str, tuple[datetime, str]],
    ) -> PublicKeyRecord:
        key = f"keys[{index}]"
        if not isinstance(doc, dict):
            raise self.fail(key, "must be a table")
        agency = self.text(doc, key, "agency")
        if agency not in agencies:
            raise self.fail(f"{key}.agency", f"{agency!r} is not one of the agencies")
        use_text = self.text(doc, key, "use")
        try:
            use = KeyUse(use_text)
        except ValueError:
            raise self.fail(f"{key}.use", f"{use_text!r} must be 'sign' or 'encrypt'") from None
        try:
            raw = base64.b64decode(self.text(doc, key, "public"), validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(f"{key}.public", "is not valid base64") from None
        if len(raw) != RAW_KEY_BYTES:
            raise self.fail(f"{key}.public", f"must be a {RAW_KEY_BYTES}-byte raw public key")
        key_id = self.text(doc, key, "key_id")
        expected_id = key_id_for(agency, use, raw)
        if key_id != expected_id:
            raise self.fail(
                f"{key}.key_id", f"{key_id!r} does not match its public key ({expected_id})"
            )
        not_before = self.instant(doc, key, "not_before")
        expires = self.instant(doc, key, "expires")
        assert not_before is not None and expires is not None
        if expires <= not_before:
            raise self.fail(f"{key}.expires", "must be later than not_before")
        intake = doc.get("intake", False)
        if not isinstance(intake, bool):
            raise self.fail(f"{key}.intake", "must be true or false")
        if intake and use is not KeyUse.SIGN:
            raise self.fail(f"{key}.intake", "only a sign key can be the intake's")
        revoked_at, reason = revocations.get(key_id, (None, None))
        return PublicKeyRecord(
            key_id, agency, use, raw, not_before, expires, revoked_at, reason, intake
        )

    def agreement(self, index: int, doc: Any, agencies: frozenset[str]) -> Agreement:
        key = f"agreements[{index}]"
        if not isinstance(doc, dict):
            raise self.fail(key, "must be a table")
        senders = self.strings(doc, key, "senders", agencies)
        recipients = self.strings(doc, key, "recipients", agencies)
        valid_from = self.day(doc, key, "valid_from")
        valid_until = self.day(doc, key, "valid_until")
        if valid_until < valid_from:
            raise self.fail(f"{key}.valid_until", "is before valid_from")
        return Agreement(
            id=self.text(doc, key, "id"),
            senders=senders,
            recipients=recipients,
            message_types=self.strings(
                doc,
                key,
                "message_types",
                vocabulary.message_types() - vocabulary.SYSTEM_MESSAGE_TYPES,
            ),
            purposes=self.strings(
                doc, key, "purposes", vocabulary.purposes() - {vocabulary.SYSTEM_PURPOSE}
            ),
            lawful_bases=self.strings(doc, key, "lawful_bases", vocabulary.lawful_bases()),
            valid_from=valid_from,
            valid_until=valid_until,
        )
