"""`mash-gateway directory publish|show`: sign the area directory and put it on the broker.

``publish`` takes the directory tables (agencies, keys, revocations,
agreements) from the hub's gateway.toml as written, signs them with the
gateway principal's key (core/area_directory.py), and publishes them to
``mash.directory``, where every router and edge picks them up within
seconds (services/directory_watch.py). The version is the publishing time
in seconds, or one more than the version held if that is later, so each
publish is newer than the last without a counter to keep.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime

from gateway.broker import topology
from gateway.broker.connection import confirmed_channel, connect
from gateway.broker.credentials import router_login
from gateway.broker.publisher import publish
from gateway.config.area_config import AreaConfig, load_config, parse_config
from gateway.config.toml_tables import directory_tables
from gateway.core import area_directory, signed_json
from gateway.infra import keystore
from gateway.infra.clock import utc_now


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("directory", help="the signed area directory")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    published = actions.add_parser(
        "publish", help="sign the config's agencies, keys and agreements and send them out"
    )
    published.set_defaults(handler=run_publish)
    shown = actions.add_parser("show", help="the directory version this host applies")
    shown.set_defaults(handler=run_show)


def signed_directory(config: AreaConfig, now: datetime) -> tuple[bytes, bytes, int]:
    """(document, signature, version) of the config file's directory tables."""
    signer = keystore.load_signing_identity(config, config.gateway, now)
    version = max(config.directory_version + 1, int(now.timestamp()))
    document = area_directory.directory_bytes(
        area_directory.Directory(
            area=config.area_id,
            version=version,
            issued_at=now,
            signer_key_id=signer.key_id,
            tables=directory_tables(config.path.read_text(encoding="utf-8")),
        )
    )
    return document, signed_json.sign(document, signer.private_key), version


async def send(config: AreaConfig, document: bytes, signature: bytes, version: int) -> None:
    connection = await connect(router_login(config).url, config.broker_tls)
    async with connection:
        channel = await confirmed_channel(connection)
        exchange = await channel.get_exchange(topology.DIRECTORY_EXCHANGE, ensure=False)
        await publish(
            exchange,
            document,
            routing_key="",
            message_id=f"directory-{config.area_id}-{version}",
            headers={topology.DIRECTORY_SIGNATURE_HEADER: signature.decode().strip()},
            content_type="application/json",
        )


def run_publish(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    document, signature, version = signed_directory(config, utc_now())
    asyncio.run(send(config, document, signature, version))
    published = parse_config(config.path.read_text(encoding="utf-8"), config.path)
    print(
        f"published area directory version {version} for {config.area_id}: "
        f"{len(published.registry.agencies)} agencies, {len(published.registry.keys)} keys, "
        f"{len(published.agreements)} agreements; fingerprint {signed_json.fingerprint(document)}"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.directory_version:
        print(f"directory version {config.directory_version} (state/directory.signed)")
    else:
        print(f"no signed directory held: {config.path.name}'s own tables are in force")
    return 0
