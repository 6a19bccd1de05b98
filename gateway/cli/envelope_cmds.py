"""`mash-gateway seal` and `mash-gateway open`: the envelope by hand, for interop and debugging.

``seal`` refuses a payload that fails its schema; ``open`` writes nothing
unless every check passes, and names the failed check when one does not.
``open`` applies no timestamp window or replay check: it is a debugging
tool for a message at rest; the router and edges apply both in flight.

With attachments: ``seal --attach PATH`` names each file in the payload and
appends its section to the container; ``open`` writes them into
``<output stem>.attachments/`` (built hidden and renamed whole) and the
payload last, only after every file matched what the payload names.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from gateway.config.area_config import ConfigError, load_config
from gateway.core import schemas
from gateway.core.attachments import check_received, manifest, with_manifest
from gateway.core.envelope import AttachmentInput, HeaderFields, recipient_keys, seal
from gateway.core.envelope import open as open_envelope
from gateway.core.errors import GatewayError
from gateway.infra import keystore
from gateway.infra.atomic import atomic_writer
from gateway.infra.clock import utc_now
from gateway.infra.spool import ciphertext_spool
from gateway.services.transfer_sender import AttachmentFile, checked_files, digest_files

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
    sealer.add_argument(
        "--attach", action="append", type=Path, default=[], metavar="PATH", help="repeatable"
    )
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
        raise GatewayError(f"{path}: cannot read: {exc.strerror or exc}") from None


def recipients_of(text: str) -> tuple[str, ...]:
    """``--to``'s comma-separated agencies, each once, in order."""
    found = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    if not found:
        raise ConfigError("--to names no agency")
    return found


def run_seal(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    recipients = recipients_of(args.to)
    document = schemas.checked(read_file(args.file), str(args.file))
    checked = checked_files([AttachmentFile(p) for p in args.attach], config.limits)
    facts = digest_files(checked)
    if facts:  # as the edge does: without files, an Attachments element is by reference only
        named = with_manifest(document.root, facts, document.message_type, str(args.file))
        if named is not None:
            document = schemas.checked(named, str(args.file))
    message_type = document.message_type
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
        ExitStack() as files,
        atomic_writer(args.output, 0o644) as out,
        ciphertext_spool() as spool,
    ):
        inputs = [
            AttachmentInput(
                files.enter_context(file.path.open("rb")),
                fact.sha256,
                files.enter_context(ciphertext_spool()),
            )
            for (file, _, _), fact in zip(checked, facts, strict=True)
        ]
        seal(fields, io.BytesIO(document.xml), signer, keys, out, spool, attachments=inputs)
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
    folder = args.output.with_name(f"{args.output.stem}.attachments")
    building = Path(tempfile.mkdtemp(dir=args.output.parent, prefix=f".{folder.name}."))
    payload = io.BytesIO()
    try:
        with container, ExitStack() as files:

            def attachment_out(index: int) -> BinaryIO:
                return files.enter_context((building / str(index)).open("wb"))

            opened = open_envelope(
                container, config.registry, identity, utc_now(), None, None, payload, attachment_out
            )
        named = manifest(schemas.validate(payload.getvalue(), str(args.file)))
        if opened.attachments:
            received = [(a.plaintext_length, a.plaintext_sha256) for a in opened.attachments]
            check_received(named, received, opened.header.fields.message_id)
            for index, facts in enumerate(named, start=1):
                (building / str(index)).rename(building / facts.file_name)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(building, folder)
        with atomic_writer(args.output) as out:
            out.write(payload.getvalue())
    finally:
        shutil.rmtree(building, ignore_errors=True)
    header = opened.header
    print(
        f"opened {header.fields.message_type} {header.fields.message_id} "
        f"from {header.fields.sender} (signed by {header.signing_key_id}); "
        f"plaintext sha256 {opened.plaintext_sha256}"
        + "".join(f", attachment {a.plaintext_sha256}" for a in opened.attachments)
        + f" -> {args.output}",
        file=sys.stderr,
    )
    return 0
