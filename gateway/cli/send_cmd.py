"""`mash-gateway send`: submit a canonical XML message from one agency's edge.

The payload is schema-checked before anything is sealed or published; each
``--attach`` file is checked (safe name, ``[limits]``) before it is read, and
named in the payload (name, media type, size, SHA-256) unless it names them
already; the router then applies the sharing agreements, and a refusal comes
back to the sender's inbox as a NonDelivery naming the failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from gateway.cli.envelope_cmds import read_file, recipients_of
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.envelope import HeaderFields
from gateway.services.edge import Edge, Submission
from gateway.services.transfer_sender import AttachmentFile


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("send", help="send a canonical message through the exchange")
    parser.add_argument("--as", dest="agency", required=True, metavar="AGENCY")
    parser.add_argument("--to", required=True, metavar="AGENCY[,AGENCY]")
    parser.add_argument("file", type=Path)
    parser.add_argument("--correlation", help="case or thread id (default: a new UUID)")
    parser.add_argument("--in-reply-to")
    parser.add_argument("--purpose", help="required unless the payload states <Purpose>")
    parser.add_argument(
        "--lawful-basis",
        action="append",
        dest="lawful_bases",
        default=[],
        help="repeatable; required unless the payload states <LawfulBasis>",
    )
    parser.add_argument("--rag", choices=["Red", "Amber", "Green"])
    parser.add_argument(
        "--attach",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="repeatable: a file that travels with the message (the payload names it)",
    )
    parser.add_argument("--json", action="store_true", help="print the sent header's ids as JSON")
    parser.set_defaults(handler=run)


async def send(config: AreaConfig, agency: str, submission: Submission) -> HeaderFields:
    """One submission; no store is opened, since only a consuming edge records anything."""
    async with Edge(config, agency) as edge:
        if submission.attachments and sys.stderr.isatty():
            edge.on_piece = progress_line
        return await edge.submit(submission)


def progress_line(sent: int, count: int) -> None:
    """On a terminal only: one line, rewritten, so a long transfer shows it is moving."""
    end = "\n" if sent == count else ""
    print(
        f"\rsent {sent} of {count} pieces ({sent * 100 // count}%)",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    submission = Submission(
        payload=read_file(args.file),
        recipients=recipients_of(args.to),
        purpose=args.purpose,
        lawful_bases=tuple(args.lawful_bases),
        correlation_id=args.correlation,
        in_reply_to=args.in_reply_to,
        rag=args.rag,
        source=str(args.file),
        attachments=tuple(AttachmentFile(path) for path in args.attach),
    )
    fields = asyncio.run(send(config, args.agency, submission))
    if args.json:
        print(
            json.dumps(
                {
                    "message_id": fields.message_id,
                    "correlation_id": fields.correlation_id,
                    "message_type": fields.message_type,
                    "sender": fields.sender,
                    "recipients": list(fields.recipients),
                    "created_at": fields.created_at.isoformat(),
                },
                indent=2,
            )
        )
        return 0
    print(
        f"sent {fields.message_type} {fields.message_id} (case {fields.correlation_id}) "
        f"from {fields.sender} to {', '.join(fields.recipients)}"
    )
    return 0
