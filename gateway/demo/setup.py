"""Create a demo area: a config and fresh keys for every agency, the intake's and the officer's.

Besides the agencies' keys and the intake's development material, it makes
the PGP key of housing's officer (housing is the demo's e-mail-only agency,
gateway/demo/mail.py) in the officer's own GnuPG home, pins it in the
config, and gives each side the other's public key. `mash-gateway init`
and `mash-gateway demo` both use it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from gateway.config.area_config import DEFAULT_CONFIG_NAME, AreaConfig, ConfigError, load_config
from gateway.core.registry import KeyUse
from gateway.demo import mail as demo_mail
from gateway.demo.area import DEMO_AGENCIES, demo_config
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.intake import devkeys as intake_devkeys


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
    blocks = [demo_config(broker_url, now.date(), ((demo_mail.OFFICER, officer),))]
    for agency in DEMO_AGENCIES:
        for use in (KeyUse.SIGN, KeyUse.ENCRYPT):
            blocks.append(
                keystore.key_block(keystore.generate(keys_dir, agency.id, use, now).record)
            )
    config_path.write_text("".join(blocks), encoding="utf-8")
    config = load_config(str(config_path))
    if config.intake is not None:
        fingerprint = intake_devkeys.create(config.intake, directory / "keys", now, replace)
        demo_mail.introduce(directory, config.intake)
        say(f"intake: development TLS pair and PGP key {fingerprint} (public key in keys/)")
        say(
            f"housing (e-mail only): its officer's PGP key {officer} is pinned; their mail "
            f"client's keyring is {directory / demo_mail.OFFICER_HOME}"
        )
    say(
        f"created area {config.area_id!r} in {directory}: {len(DEMO_AGENCIES)} agencies, "
        f"{len(config.registry.keys)} keys, {len(config.agreements)} sharing agreements; "
        f"private keys in {keys_dir} (mode 0600, never commit them)"
    )
    return config
