"""Create a demo area: a config and fresh keys for every agency, the intake's and the officer's.

The intake gets a signing key of its own for each agency whose mail it takes
(core/registry.py: it signs only mail), not that agency's keys.

Besides the agencies' keys and the intake's development material, it makes
the PGP key of housing's officer (housing is the demo's e-mail-only agency,
gateway/demo/mail.py) in the officer's own GnuPG home, pins it in the
config, and gives each side the other's public key; and the DKIM key of
health's mail server (health is the demo's `tls` domain), whose private half
it keeps under agency-systems/health/ (0600) and whose public half it pins. `mash-gateway init`
and `mash-gateway demo` both use it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from gateway.config.area_config import DEFAULT_CONFIG_NAME, AreaConfig, ConfigError, load_config
from gateway.core.registry import KeyUse
from gateway.demo import mail as demo_mail
from gateway.demo.area import DEMO_AGENCIES, DKIM_SELECTOR, demo_config
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.intake import devkeys as intake_devkeys

HEALTH_DKIM_KEY = Path("agency-systems", "health", "mail-server", f"dkim-{DKIM_SELECTOR}.key")


def write_dkim_key(path: Path, replace: bool) -> str:
    """A DKIM key pair for health's mail server: the private key at ``path`` (0600), signing
    as health.demo.example; returns the public key to pin."""
    pem, public_key = intake_devkeys.dkim_pair()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if replace:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return public_key


def create_area(
    directory: Path, broker_url: str, replace: bool, say: Callable[[str], None] = print
) -> AreaConfig:
    """Write DIR/gateway.toml and a key pair per agency; ``replace`` wipes an older area first."""
    config_path = directory / DEFAULT_CONFIG_NAME
    if config_path.exists() and not replace:
        raise ConfigError(f"{config_path}: already exists (use --force to replace the area)")
    keys_dir = directory / "keys" / "private"
    if replace:
        for old in keys_dir.glob("*.key"):
            old.unlink()
        # The old area's state (tracking store, audit trail) belongs to its keys.
        for old in (directory / "state").glob("*"):
            if old.is_file():
                old.unlink()
        shutil.rmtree(directory / demo_mail.OFFICER_HOME, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state").mkdir(exist_ok=True)
    now = utc_now().replace(microsecond=0)
    officer = demo_mail.create_officer(directory)
    health_dkim = write_dkim_key(directory / HEALTH_DKIM_KEY, replace)
    blocks = [demo_config(broker_url, now.date(), ((demo_mail.OFFICER, officer),), health_dkim)]
    for agency in DEMO_AGENCIES:
        for use in (KeyUse.SIGN, KeyUse.ENCRYPT):
            blocks.append(
                keystore.key_block(keystore.generate(keys_dir, agency.id, use, now).record)
            )
    config_path.write_text("".join(blocks), encoding="utf-8")
    config = load_config(str(config_path))
    intake = config.intake
    if intake is not None:
        # The intake signs mail with keys of its own, one per agency whose mail it takes.
        for agency_id in sorted({rule.agency for rule in intake.domains}):
            new = keystore.generate(keys_dir, agency_id, KeyUse.SIGN, now, intake=True)
            keystore.append_to_config(config_path, keystore.key_block(new.record))
        config = load_config(str(config_path))
        fingerprint = intake_devkeys.create(intake, directory / "keys", now, replace)
        demo_mail.introduce(directory, intake)
        say(f"intake: development TLS pair and PGP key {fingerprint} (public key in keys/)")
        say(
            f"housing (e-mail only): its officer's PGP key {officer} is pinned; their mail "
            f"client's keyring is {directory / demo_mail.OFFICER_HOME}"
        )
        say(
            f"health (tls): its mail server's DKIM key (selector {DKIM_SELECTOR!r}) is pinned; "
            f"the private half is {directory / HEALTH_DKIM_KEY}"
        )
    say(
        f"created area {config.area_id!r} in {directory}: {len(DEMO_AGENCIES)} agencies, "
        f"{len(config.registry.keys)} keys, {len(config.agreements)} sharing agreements; "
        f"private keys in {keys_dir} (mode 0600, never commit them)"
    )
    return config
