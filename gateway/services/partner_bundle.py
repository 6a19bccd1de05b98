"""Partner bundles: what one agency's own host needs, and nothing that is another's.

``export_bundle`` (on the hub) writes a folder: the trimmed gateway.toml
(config/partner_config.py), the agency's private keys and broker password
(0600, under ``keys/private``), the broker's CA and the files its own
adapters name (TLS and MESH certificates) when kept under the area folder,
and a manifest of every file's SHA-256 signed by the gateway principal
(core/partner_documents.py). With ``move`` the hub deletes its copies of the
agency's private keys and password once the bundle is written: it never
needs them again. With ``include_keys=False`` no private key is written: the
partner generates its own (``keys generate``) and joins with a key
registration.

``import_bundle`` (on the partner's host) refuses a bundle whose files differ
from its manifest, whose manifest the gateway did not sign, or that holds a
private key that is not the agency's own or does not match its public key in
the registry; then copies it into place, folders 0700 and keys 0600.

``write_registration`` and ``register_keys`` carry a partner's own public
keys to the hub: signed by the partner's new signing key, accepted only with
the fingerprint the partner reads out (an operator confirms it by phone).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.broker.credentials import default_credentials_dir, password_file
from gateway.config.area_config import AreaConfig, ConfigError, load_config
from gateway.config.partner_config import BUNDLE_PRIVATE_KEYS, partner_config_text
from gateway.core import partner_documents as documents
from gateway.core import signed_json
from gateway.core.errors import GatewayError
from gateway.core.registry import KeyRejected, PublicKeyRecord
from gateway.infra import keystore
from gateway.infra.atomic import atomic_writer

MANIFEST = "partner.json"
SIGNATURE_SUFFIX = ".sig"
CONFIG = "gateway.toml"
STATE = "state"


class BundleError(GatewayError):
    """A bundle or registration that cannot be written or trusted; the message says which file."""


@dataclass(frozen=True)
class Exported:
    files: tuple[str, ...]
    fingerprint: str
    moved: tuple[Path, ...]
    not_copied: tuple[Path, ...]  # adapter files outside the area folder


@dataclass(frozen=True)
class Imported:
    area: str
    agency: str
    config_path: Path
    fingerprint: str


def export_bundle(
    config: AreaConfig,
    agency: str,
    out: Path,
    now: datetime,
    *,
    include_keys: bool = True,
    move: bool = False,
) -> Exported:
    if agency not in config.registry.agencies:
        raise BundleError(f"unknown agency {agency!r}")
    if agency == config.gateway:
        raise BundleError(f"{agency} is the gateway principal: its keys stay with the router")
    secrets = _agency_secrets(config, agency) if include_keys else {}
    copies, not_copied = _adapter_files(config, agency)
    _empty_folder(out)
    written: dict[str, bytes] = {}
    text = partner_config_text(config.path.read_text(encoding="utf-8"), agency)
    written[CONFIG] = text.encode()
    for relative, source in {**secrets, **copies}.items():
        written[relative] = source.read_bytes()
    for relative, data in written.items():
        _write(out, relative, data)
    try:
        load_config(str(out / CONFIG))
    except ConfigError as exc:
        shutil.rmtree(out)
        raise BundleError(f"the trimmed config does not load, nothing written: {exc}") from None
    gateway_key = keystore.load_signing_identity(config, config.gateway, now)
    manifest = documents.manifest_bytes(
        documents.Manifest(
            area=config.area_id,
            agency=agency,
            exported_at=now,
            signer_key_id=gateway_key.key_id,
            files={k: hashlib.sha256(v).hexdigest() for k, v in sorted(written.items())},
        )
    )
    _write(out, MANIFEST, manifest)
    _write(out, MANIFEST + SIGNATURE_SUFFIX, signed_json.sign(manifest, gateway_key.private_key))
    moved = tuple(secrets.values()) if move else ()
    for path in moved:
        path.unlink()
    return Exported(tuple(sorted(written)), signed_json.fingerprint(manifest), moved, not_copied)


def import_bundle(bundle: Path, destination: Path) -> Imported:
    manifest_bytes = _read(bundle / MANIFEST)
    manifest = documents.parse_manifest(manifest_bytes)
    try:
        config = load_config(str(bundle / CONFIG))
    except ConfigError as exc:
        raise BundleError(f"{bundle / CONFIG}: {exc}") from None
    if (config.area_id, manifest.agency in config.registry.agencies) != (manifest.area, True):
        raise BundleError(f"{bundle / MANIFEST}: names an area or agency its config does not")
    try:
        signer = config.registry.verifying_key(
            manifest.signer_key_id, config.gateway, manifest.exported_at
        )
    except KeyRejected as exc:
        raise BundleError(f"{bundle / MANIFEST}: not signed by the area's gateway: {exc}") from None
    signed_json.check_signature(
        manifest_bytes,
        _read(bundle / (MANIFEST + SIGNATURE_SUFFIX)),
        signer,
        str(bundle / MANIFEST),
    )
    _check_files(bundle, manifest)
    for relative in manifest.files:
        if relative.startswith(BUNDLE_PRIVATE_KEYS + "/") and relative.endswith(".key"):
            _check_own_key(bundle / relative, config, manifest.agency)
    _empty_folder(destination)
    for relative in [*manifest.files, MANIFEST, MANIFEST + SIGNATURE_SUFFIX]:
        _write(destination, relative, _read(bundle / relative))
    (destination / STATE).mkdir(mode=0o700)  # the edge's own store (BUNDLE_STORE_URL)
    return Imported(
        manifest.area,
        manifest.agency,
        destination / CONFIG,
        signed_json.fingerprint(manifest_bytes),
    )


def write_registration(config: AreaConfig, agency: str, out: Path, now: datetime) -> str:
    """The agency's keys held on this host, signed by its current signing key; the fingerprint."""
    held = tuple(
        record
        for record in config.registry.keys_of(agency)
        if record.problem_at(now) is None
        and not record.intake
        and keystore.private_key_path(config.private_keys_dir, record.key_id).exists()
    )
    signer = keystore.load_signing_identity(config, agency, now)
    document = documents.registration_bytes(
        documents.Registration(config.area_id, agency, signer.key_id, held)
    )
    _write(out.parent, out.name, document, mode=0o644)
    _write(out.parent, out.name + SIGNATURE_SUFFIX, signed_json.sign(document, signer.private_key))
    return signed_json.fingerprint(document)


def register_keys(config: AreaConfig, request: Path, accept: str | None) -> list[PublicKeyRecord]:
    """Append the registration's new keys to the hub's config, once its fingerprint is confirmed."""
    document = _read(request)
    registration = documents.parse_registration(
        document, _read(request.with_name(request.name + SIGNATURE_SUFFIX))
    )
    if registration.area != config.area_id:
        raise BundleError(f"{request}: for area {registration.area!r}, not {config.area_id!r}")
    if registration.agency not in config.registry.agencies:
        raise BundleError(f"{request}: unknown agency {registration.agency!r}")
    expected = signed_json.fingerprint(document)
    if accept is None or " ".join(accept.split()) != expected:
        raise BundleError(
            f"{request}: fingerprint {expected}: confirm it with {registration.agency} by phone, "
            f"then rerun with --accept '{expected}'"
        )
    new = [k for k in registration.keys if k.key_id not in config.registry.keys]
    for record in new:
        keystore.append_to_config(config.path, keystore.key_block(record))
    return new


def _agency_secrets(config: AreaConfig, agency: str) -> dict[str, Path]:
    """The agency's private keys and broker password on the hub, by their path in a bundle.

    Not the intake's keys for the agency: they stay with the intake.
    """
    found: dict[str, Path] = {}
    for record in config.registry.keys_of(agency):
        if record.intake:
            continue
        path = keystore.private_key_path(config.private_keys_dir, record.key_id)
        if path.exists():
            found[f"{BUNDLE_PRIVATE_KEYS}/{path.name}"] = path
    if not found:
        raise BundleError(
            f"no private key of {agency} in {config.private_keys_dir}: export with --no-keys and "
            "let the partner generate its own (`keys generate`, then `partner request`)"
        )
    password = password_file(default_credentials_dir(config), agency)
    if not password.exists():
        raise BundleError(
            f"{agency} has no broker login yet ({password} is missing): "
            "run `mash-gateway broker setup` first"
        )
    found[f"{BUNDLE_PRIVATE_KEYS}/{password.parent.name}/{password.name}"] = password
    return found


def _adapter_files(config: AreaConfig, agency: str) -> tuple[dict[str, Path], tuple[Path, ...]]:
    named: list[Path] = []
    for adapter in config.adapters:
        if adapter.agency != agency:
            continue
        if adapter.http is not None:
            named += [p for p in (adapter.http.tls_cert, adapter.http.tls_key) if p]
        if adapter.mesh is not None:
            named += [p for p in (adapter.mesh.cert, adapter.mesh.key, adapter.mesh.ca) if p]
    if config.broker_tls is not None and config.broker_tls.ca is not None:
        named.append(config.broker_tls.ca)
    base = config.base_dir.resolve()
    inside = {p for p in named if p.resolve().is_relative_to(base) and p.is_file()}
    copies = {p.resolve().relative_to(base).as_posix(): p for p in inside}
    return copies, tuple(p for p in named if p not in inside)


def _check_files(bundle: Path, manifest: documents.Manifest) -> None:
    present = {
        p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() or p.is_symlink()
    } - {MANIFEST, MANIFEST + SIGNATURE_SUFFIX}
    extra = sorted(present - manifest.files.keys())
    if extra:
        raise BundleError(f"{bundle / extra[0]}: not in the signed manifest")
    for relative, digest in sorted(manifest.files.items()):
        path = bundle / relative
        if relative not in present or path.is_symlink():
            raise BundleError(f"{path}: listed in the manifest but missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise BundleError(f"{path}: differs from the signed manifest")


def _check_own_key(path: Path, config: AreaConfig, agency: str) -> None:
    """A private key in a bundle must be the agency's, and match its registered public key."""
    record = config.registry.keys.get(path.name.removesuffix(".key"))
    if record is None or record.agency != agency:
        raise BundleError(f"{path}: not a key of {agency}")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise BundleError(f"{path}: not a readable private key") from None
    if not isinstance(private, Ed25519PrivateKey | X25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 or X25519 key")
    raw = private.public_key().public_bytes_raw()
    if raw != record.raw:
        raise BundleError(f"{path}: does not match {record.key_id}'s public key")


def _empty_folder(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise BundleError(f"{folder}: exists and is not empty")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write(root: Path, relative: str, data: bytes, mode: int = 0o600) -> None:
    target = root / relative
    for parent in reversed(target.relative_to(root).parents):
        folder = root / parent
        if not folder.exists():
            folder.mkdir(mode=0o700)
    with atomic_writer(target, mode) as handle:
        handle.write(data)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror}") from None
