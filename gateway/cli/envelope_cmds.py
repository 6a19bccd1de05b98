"""`mash-gateway seal` and `mash-gateway open`: the envelope by hand, for interop and debugging.

``seal`` refuses a payload that fails its schema; ``open`` writes nothing
unless every check passes, and names the failed check when one does not.
``open`` applies no timestamp window or replay check: it is a debugging
tool for a message at rest; the router and edges apply both in flight.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from gateway.config.area_config import ConfigError, load_config
from gateway.core import schemas
from gateway.core.envelope import HeaderFields, recipient_keys, seal
from gateway.core.envelope import open as open_envelope
from gateway.core.errors import GatewayError
from gateway.infra import keystore
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now
from gateway.infra.spool import ciphertext_spool

DEFAULT_PURPOSE = "child-safeguarding"
DEFAULT_LAWFUL_BASES = ("uk-gdpr-6-1-e", "uk-gdpr-9-2-g-dpa-sch1-18")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sealer = subparsers.add_parser("seal", help="sign and encrypt a canonical XML message")
    sealer.add_argument("--from", dest="sender", required=True, metavar="AGENCY")
    sealer.add_argument("--to", required=True, metavar="AGENCY[,AGENCY]")
    sealer.add_argument("file", type=Path)
    sealer.add_argument("-o", "--output", type=Path, required=True)
    sealer.add_argument("--correlation", help="case or thread id (default: a new UUID)")
    sealer.add_argument("--in-reply-to")
    sealer.add_argument("--purpose", default=DEFAULT_PURPOSE)
    sealer.add_argument(
        "--lawful-basis",
        action="append",
        dest="lawful_bases",
        help=f"repeatable (default: {', '.join(DEFAULT_LAWFUL_BASES)})",
    )
    sealer.add_argument("--rag", choices=["Red", "Amber", "Green"])
    sealer.set_defaults(handler=run_seal)

    opener = subparsers.add_parser("open", help="verify and decrypt a sealed message")
    opener.add_argument("--as", dest="agency", required=True, metavar="AGENCY")
    opener.add_argument("file", type=Path)
    opener.add_argument("-o", "--output", type=Path, required=True)
    opener.set_defaults(handler=run_open)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read: {exc.strerror}") from None


def run_seal(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    recipients = tuple(dict.fromkeys(a.strip() for a in args.to.split(",") if a.strip()))
    if not recipients:
        raise ConfigError("--to names no agency")
    document = read_file(args.file)
    message_type = schemas.message_type(schemas.validate(document, str(args.file)))
    now = utc_now()
    signer = keystore.load_signing_identity(config, args.sender, now)
    keys = recipient_keys(config.registry, recipients, now)
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=args.correlation or str(uuid.uuid4()),
        message_type=message_type,
        sender=args.sender,
        recipients=recipients,
        created_at=now,
        purpose=args.purpose,
        lawful_bases=tuple(args.lawful_bases or DEFAULT_LAWFUL_BASES),
        in_reply_to=args.in_reply_to,
        rag=args.rag,
    )
    with (
        args.file.open("rb") as plaintext,
        atomic_writer(args.output, 0o644) as out,
        ciphertext_spool() as spool,
    ):
        seal(fields, plaintext, signer, keys, out, spool)
    print(
        f"sealed {message_type} {fields.message_id} from {args.sender} "
        f"to {', '.join(recipients)} -> {args.output}"
    )
    return 0


def run_open(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    identity = keystore.load_decryption_identity(config, args.agency)
    try:
        container = args.file.open("rb")
    except OSError as exc:
        raise GatewayError(f"{args.file}: cannot read: {exc.strerror}") from None
    with container, atomic_writer(args.output) as out:
        opened = open_envelope(container, config.registry, identity, utc_now(), None, None, out)
    header = opened.header
    print(
        f"opened {header.fields.message_type} {header.fields.message_id} "
        f"from {header.fields.sender} (signed by {header.signing_key_id}); "
        f"plaintext sha256 {opened.plaintext_sha256} "
        f"-> {args.output}",
        file=sys.stderr,
    )
    return 0
