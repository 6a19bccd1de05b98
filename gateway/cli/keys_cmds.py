"""`mash-gateway keys list|generate|rotate|revoke`: manage an area's agency keys.

Every change appends to gateway.toml (public half) and keys/private (0600
private half); nothing is rewritten, so the key history stays auditable.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from gateway.config.area_config import AreaConfig, ConfigError, load_config
from gateway.core.registry import KeyUse
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.views import validity


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("keys", help="list, generate, rotate or revoke agency keys")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="show every key with its status")
    listing.add_argument("--agency")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=run_list)

    for name, helptext, handler in (
        ("generate", "add a new key pair for an agency", run_generate),
        ("rotate", "add a successor key; older keys keep verifying until they expire", run_rotate),
    ):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("--agency", required=True)
        action.add_argument(
            "--use", choices=[u.value for u in KeyUse], help="sign or encrypt (default: both)"
        )
        action.add_argument(
            "--intake",
            action="store_true",
            help="a signing key of the secure-mail intake for the agency: it signs only mail "
            "(pgp-verified or tls-only), and the agency's edge never uses it",
        )
        action.add_argument(
            "--days",
            type=int,
            default=keystore.DEFAULT_VALIDITY.days,
            help="validity in days (default: %(default)s)",
        )
        action.set_defaults(handler=handler)

    revoke = actions.add_parser("revoke", help="revoke a key: it never verifies again")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(handler=run_revoke)


def run_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = utc_now()
    agencies = [args.agency] if args.agency else sorted(config.registry.agencies)
    current = validity.current_key_ids(config.registry, now)
    for agency in agencies:
        config.registry.agency(agency)  # an unknown --agency is refused, naming it
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "key_id": record.key_id,
                        "agency": agency,
                        "use": record.use.value,
                        "role": record.role,
                        "not_before": record.not_before.isoformat(),
                        "expires": record.expires.isoformat(),
                        "status": validity.key_status(record, current, now),
                    }
                    for agency in agencies
                    for record in config.registry.keys_of(agency)
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'KEY ID':<44} {'USE':<8} {'ROLE':<7} {'NOT BEFORE':<20} {'EXPIRES':<20} STATUS")
    for agency in agencies:
        for record in config.registry.keys_of(agency):
            print(
                f"{record.key_id:<44} {record.use.value:<8} {record.role:<7} "
                f"{record.not_before:%Y-%m-%d %H:%M}Z{'':<3} "
                f"{record.expires:%Y-%m-%d %H:%M}Z{'':<3} "
                f"{validity.key_status(record, current, now)}"
            )
    return 0


def _uses(args: argparse.Namespace) -> tuple[KeyUse, ...]:
    if args.intake:
        if args.use == KeyUse.ENCRYPT.value:
            raise ConfigError("--intake keys only sign: mail to an agency is sealed to its own key")
        return (KeyUse.SIGN,)
    return (KeyUse(args.use),) if args.use else (KeyUse.SIGN, KeyUse.ENCRYPT)


def _add_keys(
    config: AreaConfig, agency: str, uses: tuple[KeyUse, ...], days: int, intake: bool
) -> None:
    if days <= 0:
        raise ConfigError(f"--days must be positive, not {days}")
    now = utc_now().replace(microsecond=0)
    role = "intake " if intake else ""
    for use in uses:
        new = keystore.generate(
            config.private_keys_dir, agency, use, now, timedelta(days=days), intake=intake
        )
        keystore.append_to_config(config.path, keystore.key_block(new.record))
        print(
            f"added {new.record.key_id} ({role}{use.value}), valid until "
            f"{new.record.expires:%Y-%m-%d}; private key {new.private_path}"
        )


def run_generate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    config.registry.agency(args.agency)
    _add_keys(config, args.agency, _uses(args), args.days, args.intake)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = utc_now()
    uses = _uses(args)
    for use in uses:
        old = config.registry.current_key(args.agency, use, now, intake=args.intake)
        print(
            f"{old.key_id} stays valid for verifying until {old.expires:%Y-%m-%d}; "
            "new messages use its successor"
        )
    _add_keys(config, args.agency, uses, args.days, args.intake)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    record = config.registry.keys.get(args.key_id)
    if record is None:
        raise ConfigError(f"unknown key id {args.key_id!r} (see `mash-gateway keys list`)")
    if record.revoked_at is not None:
        raise ConfigError(f"{args.key_id} is already revoked")
    keystore.append_to_config(
        config.path, keystore.revocation_block(args.key_id, utc_now(), args.reason)
    )
    print(f"revoked {args.key_id}: it will never verify again")
    return 0
