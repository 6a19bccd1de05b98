"""The signed area directory: published once at the hub, applied by running routers and edges.

Over a real RabbitMQ: a router and edges already running take a new agency
and a revocation from `mash-gateway directory publish` without a restart;
a router on its own least-privilege login consumes the new agency's ingress
as soon as `broker setup` has made it.
On real files: a tampered, foreign, rolled-back or wrongly signed directory
is refused, counted, and the one in force stays.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from structlog.testing import capture_logs

from gateway.broker.credentials import default_credentials_dir
from gateway.broker.topology import ingress_queue
from gateway.broker.vhost import BrokerAdmin
from gateway.cli import main
from gateway.cli.broker_cmds import setup, url_vhost
from gateway.cli.directory_cmds import send, signed_directory
from gateway.config.area_config import AreaConfig, load_config
from gateway.core import area_directory, signed_json
from gateway.core.registry import KeyRejected, KeyUse
from gateway.core.resources import schemas_dir
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services import metrics
from gateway.services.directory_watch import DirectoryWatch
from gateway.services.edge import Edge, Submission
from gateway.services.router import run_router
from gateway.store.sqlite import SqliteStore
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, Inbox, eventually, running_exchange
from tests.integration.logins_harness import area_with_logins

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
NEW_AGENCY = """
[[agencies]]
id = "asc"
name = "Demo Borough Adult Social Care"
kind = "adult-social-care"
contacts = ["front.door@asc.demo.example"]

[[agreements]]
id = "isa-asc-hub"
senders = ["asc"]
recipients = ["hub"]
message_types = ["InformationRequest"]
purposes = ["child-safeguarding", "adult-safeguarding"]
lawful_bases = ["uk-gdpr-6-1-e", "uk-gdpr-9-2-g-dpa-sch1-18", "ca-2004-s11"]
valid_from = 2026-01-01
valid_until = 2030-01-01
"""


@pytest.fixture
async def exchange(broker_admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as running:
        yield running


@pytest.fixture
def own_logins(broker_admin: BrokerAdmin, tmp_path: Path) -> Iterator[AreaConfig]:
    with area_with_logins(broker_admin, tmp_path / "area") as config:
        yield config


def refused(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mash_gateway_directory_refused_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_new_agency_and_a_revocation_apply_without_a_restart(exchange: Exchange) -> None:
    config_path = exchange.config.path
    hub = await exchange.edge("hub")
    police = await exchange.edge("police", consume=False)
    with config_path.open("a") as toml:
        toml.write(NEW_AGENCY)
    assert main(["--config", str(config_path), "keys", "generate", "--agency", "asc"]) == 0
    police_key = police.registry.current_key("police", KeyUse.SIGN, utc_now()).key_id
    revoke = ["keys", "revoke", police_key, "--reason", "lost"]
    assert main(["--config", str(config_path), *revoke]) == 0
    publish = ["--config", str(config_path), "directory", "publish"]
    assert await asyncio.to_thread(main, publish) == 0

    # Police's running edge stops signing with the revoked key as soon as it has the directory.
    await until(lambda: police.config.directory_version > 0)
    with pytest.raises(KeyRejected, match="police"):
        await police.submit(Submission(REQUEST, ("hub",)))

    # The running router knows the new agency, and declared and consumes its ingress and
    # inbox (on the administrator's URL): its edge's request reaches the hub.
    await eventually(lambda: consumed(exchange.amqp_url, ingress_queue("asc")), timeout=30)
    exchange.config = load_config(str(config_path))
    asc = await exchange.edge("asc")
    sent = await asc.submit(Submission(REQUEST, ("hub",)))
    hub_inbox = exchange.inboxes["hub"]
    await until(lambda: bool(hub_inbox.of_type("InformationRequest")))
    assert [m.header.fields.message_id for m in hub_inbox.of_type("InformationRequest")] == [
        sent.message_id
    ]
    assert hub.config.directory_version == asc.config.directory_version > 0


async def test_a_new_agencys_ingress_is_consumed_once_setup_has_made_it(
    own_logins: AreaConfig, tmp_path: Path
) -> None:
    area, path = own_logins, str(own_logins.path)
    store = SqliteStore(str(tmp_path / "router.db"))
    await store.open()
    stop, ready = asyncio.Event(), asyncio.Event()
    router = asyncio.create_task(run_router(area, store, stop, ready))  # its own login
    hub_inbox = Inbox()
    try:
        await asyncio.wait_for(ready.wait(), 15)
        async with Edge(area, "hub", store) as hub:
            await hub.consume(hub_inbox.handler)
            with area.path.open("a") as toml:
                toml.write(NEW_AGENCY)
            assert main(["--config", path, "keys", "generate", "--agency", "asc"]) == 0
            grown = load_config(path)
            document, signature, version = signed_directory(grown, utc_now())
            with capture_logs() as logs:  # (main() would configure the logs afresh)
                await send(grown, document, signature, version)  # `directory publish`

                async def named_missing() -> bool:  # it cannot declare: setup has to
                    return any(
                        e["event"] == "router.ingress_missing"
                        and e["queue"] == ingress_queue("asc")
                        for e in logs
                    )

                await eventually(named_missing, timeout=30)
                vhost = url_vhost(grown.broker_url)
                await setup(grown, vhost, default_credentials_dir(grown), rotate=False)
                async with Edge(grown, "asc") as asc:  # on asc's own new login
                    sent = await asc.submit(Submission(REQUEST, ("hub",)))

                    async def arrived() -> bool:
                        received = hub_inbox.of_type("InformationRequest")
                        return [m.header.fields.message_id for m in received] == [sent.message_id]

                    await eventually(arrived, timeout=30)  # no restart: the router looked again
            assert await consumed(area.broker_url, ingress_queue("asc"))  # by the router
    finally:
        stop.set()
        await router
        await store.close()


async def consumed(url: str, queue: str) -> bool:
    connection = await aio_pika.connect(url)
    async with connection:
        try:
            declared = await (await connection.channel()).declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return bool(declared.declaration_result.consumer_count)


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    """Poll ``check``: the directory travels through the broker, not through this test."""
    for _ in range(int(timeout / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


async def test_tampered_foreign_old_or_wrongly_signed_directories_are_refused(
    tmp_path: Path,
) -> None:
    area = tmp_path / "area"
    assert main(["init", str(area), "--broker-url", "amqp://guest:guest@127.0.0.1:5672/x"]) == 0
    config = load_config(str(area / "gateway.toml"))
    applied: list[int] = []

    async def apply(new: object) -> None:
        applied.append(getattr(new, "directory_version", -1))

    watch = DirectoryWatch(config, apply)
    document, signature, version = signed_directory(config, utc_now())

    before = refused("signature")
    tampered = document.replace(b"Demo Borough", b"Evil Borough")
    assert not await watch.offer(tampered, signature)
    assert refused("signature") == before + 1

    police = keystore.load_signing_identity(config, "police", utc_now())
    forged = base64.b64encode(police.private_key.sign(document))
    assert not await watch.offer(document, forged)
    before = refused("signer")
    by_police = area_directory.directory_bytes(
        area_directory.Directory("demo", version, utc_now(), police.key_id, "")
    )
    assert not await watch.offer(by_police, signed_json.sign(by_police, police.private_key))
    assert refused("signer") == before + 1

    assert await watch.offer(document, signature)
    assert applied == [version]
    assert load_config(str(area / "gateway.toml")).directory_version == version  # kept on disk

    before = refused("not-newer")
    assert not await watch.offer(document, signature)  # the same version again: a rollback
    assert refused("not-newer") == before + 1

    foreign = document.replace(b'"area":"demo"', b'"area":"elsewhere"')
    assert not await watch.offer(foreign, signature)
    assert applied == [version]
    assert watch.config.directory_version == version
