"""`mash-gateway demo`: the README's first command.

Creates the demo area (once) and shows the secure core working end to end:
police seal a Referral for the hub, the hub verifies and opens it, and the
plaintext digests match. When the exchange lands this becomes the full
multi-agency flow over RabbitMQ.
"""

from __future__ import annotations

import argparse
import hashlib
import uuid
from pathlib import Path

from gateway import keystore
from gateway.cli import init_cmd
from gateway.clock import utc_now
from gateway.config import DEFAULT_CONFIG_NAME, load_config
from gateway.envelope import HeaderFields, RecipientKey, open_bytes, seal_bytes, verify
from gateway.resources import schemas_dir

DEFAULT_AREA = Path("demo-area")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the demo flow in a local demo area")
    parser.add_argument(
        "--area",
        type=Path,
        default=DEFAULT_AREA,
        help="demo area directory (created if absent; default: %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    area: Path = args.area
    config_path = area / DEFAULT_CONFIG_NAME
    if not config_path.exists():
        init_cmd.run(
            argparse.Namespace(dir=area, broker_url=init_cmd.DEFAULT_BROKER_URL, force=False)
        )
    config = load_config(str(config_path))
    referral = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes()
    now = utc_now()
    signer = keystore.load_signing_identity(config, "police", now)
    hub_key_id, hub_key = config.registry.encryption_key(config.hub, now)
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=f"DEMO-{uuid.uuid4().hex[:8].upper()}",
        message_type="Referral",
        sender="police",
        recipients=(config.hub,),
        created_at=now,
        purpose="child-safeguarding",
        lawful_bases=("dpa-2018-part3-sch8-4", "ca-2004-s11"),
        rag="Red",
    )
    sealed = seal_bytes(fields, referral, signer, [RecipientKey(config.hub, hub_key_id, hub_key)])
    print(
        f"1. police sealed Referral {fields.message_id} for {config.hub}: "
        f"{len(referral)} bytes -> {len(sealed)} bytes, signed by {signer.key_id}"
    )
    verified = verify(sealed, config.registry, now, None, None)
    print(
        f"2. origin verified without decrypting: sender {verified.header.fields.sender}, "
        f"key {verified.header.signing_key_id}"
    )
    opened, plaintext = open_bytes(
        sealed,
        config.registry,
        keystore.load_decryption_identity(config, config.hub),
        now,
        None,
        None,
    )
    same = hashlib.sha256(plaintext).hexdigest() == hashlib.sha256(referral).hexdigest()
    print(
        f"3. {config.hub} opened it: plaintext sha256 {opened.plaintext_sha256} "
        f"({'matches' if same else 'DOES NOT MATCH'} what police sealed)"
    )
    return 0 if same else 1
