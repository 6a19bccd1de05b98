"""`mash-gateway partner export|import|request|register`: give each agency's host only its own.

The shell over services/partner_bundle.py; it prints the fingerprints that
the two sides compare by phone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.config.area_config import load_config
from gateway.infra.clock import utc_now
from gateway.services import partner_bundle


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "partner", help="partner bundles and key registrations for agencies on their own hosts"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    export = actions.add_parser("export", help="write what AGENCY's own host needs, nothing more")
    export.add_argument("agency")
    export.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    export.add_argument(
        "--no-keys",
        action="store_true",
        help="no private keys: the partner generates its own and sends `partner request`",
    )
    export.add_argument(
        "--move",
        action="store_true",
        help="delete the hub's copies of the agency's private keys and password once written",
    )
    export.set_defaults(handler=run_export)

    imported = actions.add_parser("import", help="check a bundle and set up this host from it")
    imported.add_argument("bundle", type=Path)
    imported.add_argument("--to", type=Path, required=True, metavar="DIR")
    imported.set_defaults(handler=run_import)

    request = actions.add_parser(
        "request", help="sign this host's own public keys of AGENCY for the hub to register"
    )
    request.add_argument("--agency", required=True)
    request.add_argument("-o", "--out", type=Path, required=True, metavar="FILE")
    request.set_defaults(handler=run_request)

    registered = actions.add_parser("register", help="add a partner's signed public keys")
    registered.add_argument("request", type=Path)
    registered.add_argument(
        "--accept", metavar="FINGERPRINT", help="the fingerprint the partner read out to you"
    )
    registered.set_defaults(handler=run_register)


def run_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    done = partner_bundle.export_bundle(
        config, args.agency, args.out, utc_now(), include_keys=not args.no_keys, move=args.move
    )
    print(f"wrote {args.agency}'s bundle to {args.out}: {len(done.files)} file(s)")
    for path in done.not_copied:
        print(f"not copied (outside the area folder; give it to {args.agency} yourself): {path}")
    for path in done.moved:
        print(f"deleted the hub's copy: {path}")
    print(f"manifest fingerprint: {done.fingerprint}")
    print(f"{args.agency} compares it when importing; send the folder over a channel you trust")
    return 0


def run_import(args: argparse.Namespace) -> int:
    done = partner_bundle.import_bundle(args.bundle, args.to)
    print(f"imported {done.agency}'s bundle for area {done.area} into {args.to}")
    print(f"manifest fingerprint: {done.fingerprint} (compare it with the hub's by phone)")
    print(
        f"next: mash-gateway --config {done.config_path} inbox --as {done.agency} "
        "--out DIR --follow (or `adapter`)"
    )
    return 0


def run_request(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    fingerprint = partner_bundle.write_registration(config, args.agency, args.out, utc_now())
    print(f"wrote {args.out} and {args.out}.sig; send both to the hub")
    print(f"fingerprint: {fingerprint} (read it to the hub's operator by phone)")
    return 0


def run_register(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    added = partner_bundle.register_keys(config, args.request, args.accept)
    for record in added:
        print(f"registered {record.key_id} ({record.use.value}) in {config.path}")
    if not added:
        print("nothing new: every key in the request is already registered")
    return 0
