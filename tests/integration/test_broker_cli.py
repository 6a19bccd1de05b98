"""`mash-gateway broker setup|export-definitions` through the real CLI, against the real RabbitMQ.

The permission rules themselves are tested in test_topology.py; these tests
check what the command leaves behind: users that log in with the passwords
in their files, with exactly the grants the rules give, kept across runs,
and a router user that may do its work and nothing more. Each module run
uses its own vhost and area id ``t<uuid8>``, so its users are
``mash-t<uuid8>-<principal>`` (the prefix derived from the area id), all
removed afterwards, so parallel runs never collide.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiormq
import pytest
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from gateway.broker.connection import BrokerUnavailable, confirmed_channel, connect
from gateway.broker.definitions import QUARANTINE_KEEPER, password_hash
from gateway.broker.publisher import PublishFailed, publish
from gateway.broker.topology import (
    DELIVER_EXCHANGE,
    EVENTS_EXCHANGE,
    INGRESS_ROUTING_KEY,
    QUARANTINE_EXCHANGE,
    QUARANTINE_QUEUE,
    inbox_queue,
    ingress_exchange,
    ingress_queue,
)
from gateway.broker.vhost import BrokerAdmin, Credentials, vhost_url
from gateway.cli import main
from gateway.demo.area import DEMO_AGENCIES

pytestmark = pytest.mark.integration

AMQP_URL = os.environ.get("MASH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
COMMITTED_DEFINITIONS = Path(__file__).parents[2] / "ops" / "rabbitmq" / "definitions.json"
PRINCIPALS = sorted([*(a.id for a in DEMO_AGENCIES), QUARANTINE_KEEPER])


@dataclass(frozen=True)
class Area:
    config: str
    vhost: str
    prefix: str
    credentials: Path
    first_output: str

    def passwords(self) -> dict[str, str]:
        return {p: (self.credentials / f"{p}.password").read_text().strip() for p in PRINCIPALS}

    def user(self, principal: str) -> str:
        return f"{self.prefix}{principal}"

    async def login(self, principal: str, password: str | None = None) -> AbstractRobustConnection:
        secret = password or self.passwords()[principal]
        return await connect(
            vhost_url(AMQP_URL, self.vhost, Credentials(self.user(principal), secret))
        )


def broker_cli(area_config: str, *args: str) -> tuple[int, str]:
    """`broker setup`'s exit code, and what it printed (stdout, then any error)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", area_config, "broker", "setup", *args])
    return code, out.getvalue() + err.getvalue()


def new_area(directory: Path, vhost: str, area_id: str) -> str:
    """`mash-gateway init` on ``vhost``, the area renamed ``area_id``; its config's path."""
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    toml = directory / "gateway.toml"
    toml.write_text(toml.read_text().replace('id = "demo"', f'id = "{area_id}"', 1))
    return str(toml)


@pytest.fixture(scope="module")
def area(broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Area]:
    """A demo area on a fresh vhost, after one `broker setup` with the default credentials dir."""
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"mash-test-{tag}", f"mash-t{tag}-"
    directory = tmp_path_factory.mktemp("broker-cli") / "area"
    config = new_area(directory, vhost, f"t{tag}")
    try:
        code, output = broker_cli(config)
        assert code == 0
        yield Area(config, vhost, prefix, directory / "keys" / "private" / "broker", output)
    finally:
        asyncio.run(broker_admin.delete_vhost(vhost))
        for principal in PRINCIPALS:
            asyncio.run(broker_admin.delete_user(f"{prefix}{principal}"))


def rabbitmqctl(*args: str) -> list[list[str]]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in listed.splitlines() if line]


def test_setup_writes_one_private_password_file_per_principal_and_prints_none(area: Area) -> None:
    assert stat.S_IMODE(area.credentials.stat().st_mode) & 0o077 == 0
    files = sorted(area.credentials.glob("*.password"))
    assert [f.name.removesuffix(".password") for f in files] == PRINCIPALS
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    passwords = area.passwords().values()
    assert len(set(passwords)) == len(PRINCIPALS)
    assert not any(p in area.first_output for p in passwords)
    assert f"user {area.user('police')} (police): created, new password" in area.first_output
    assert "every user logs in with the password in its file" in area.first_output


def test_setup_again_keeps_passwords_and_exports_what_it_made(area: Area, tmp_path: Path) -> None:
    before = area.passwords()
    exported = tmp_path / "definitions.json"
    code, output = broker_cli(area.config, "--export", str(exported))
    assert code == 0
    assert area.passwords() == before
    assert "new password" not in output
    for principal in PRINCIPALS:
        assert f"user {area.user(principal)} ({principal}): password kept" in output

    async def login_with_the_first_password() -> None:
        await (await area.login("police", before["police"])).close()

    asyncio.run(login_with_the_first_password())  # the broker's password is the first one too

    doc = json.loads(exported.read_text())
    assert {u["name"] for u in doc["users"]} == {area.user(p) for p in PRINCIPALS}
    assert all(u["password_hash"] == "" for u in doc["users"])
    on_broker = {row[0] for row in rabbitmqctl("list_queues", "-p", area.vhost, "name")}
    assert {q["name"] for q in doc["queues"]} == on_broker
    granted = {
        tuple(row)
        for row in rabbitmqctl("list_permissions", "-p", area.vhost)
        if row[0].startswith(area.prefix)
    }
    assert granted == {
        (p["user"], p["configure"], p["write"], p["read"]) for p in doc["permissions"]
    }


async def get(queue: AbstractQueue, timeout: float = 5) -> AbstractIncomingMessage:
    for _ in range(int(timeout / 0.05)):
        message = await queue.get(no_ack=False, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message on {queue.name} within {timeout}s")


async def refused_channel(connection: AbstractRobustConnection) -> AbstractRobustChannel:
    """A fresh channel: a refusal closes the channel it happens on."""
    return await confirmed_channel(connection)


def test_the_users_it_makes_may_submit_and_read_their_own_inbox_only(area: Area) -> None:
    async def check() -> None:
        gateway = await area.login("gateway")
        police = await area.login("police")
        try:
            router = await confirmed_channel(gateway)
            deliver = await router.get_exchange(DELIVER_EXCHANGE, ensure=False)
            for agency in ("police", "health"):
                await publish(deliver, b"x", routing_key=agency, message_id=f"m-for-{agency}")

            edge = await confirmed_channel(police)
            ingress = await edge.get_exchange(ingress_exchange("police"), ensure=False)
            await publish(ingress, b"x", routing_key=INGRESS_ROUTING_KEY, message_id="m-submit")
            submitted = await get(await router.get_queue(ingress_queue("police"), ensure=False))
            await submitted.ack()
            assert submitted.message_id == "m-submit"
            mine = await get(await edge.get_queue(inbox_queue("police"), ensure=True))
            await mine.ack()
            assert mine.message_id == "m-for-police"

            theirs = await (await refused_channel(police)).get_queue(
                inbox_queue("health"), ensure=False
            )
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await theirs.get(fail=False)
            forged = await (await refused_channel(police)).get_exchange(
                DELIVER_EXCHANGE, ensure=False
            )
            with pytest.raises(PublishFailed, match="may not publish there"):
                await publish(forged, b"x", routing_key="health", message_id="m-forged")
        finally:
            await police.close()
            await gateway.close()

    asyncio.run(check())


def test_the_routers_user_may_route_and_nothing_more(area: Area) -> None:
    """Consume the ingress queues; publish deliveries, events, quarantine; no inbox, no ingress."""

    async def check() -> None:
        gateway = await area.login("gateway")
        try:
            router = await confirmed_channel(gateway)
            for exchange in (EVENTS_EXCHANGE, QUARANTINE_EXCHANGE):
                target = await router.get_exchange(exchange, ensure=True)  # passive: allowed
                # Confirmed: gateway.quarantine holds it. No one subscribes to events here.
                mandatory = exchange != EVENTS_EXCHANGE
                await publish(
                    target, b"x", routing_key="r", message_id=f"m-{exchange}", mandatory=mandatory
                )

            refused = aiormq.exceptions.ChannelAccessRefused

            async def take(message: AbstractIncomingMessage) -> None:
                await message.ack()

            for queue in (inbox_queue("police"), inbox_queue("hub"), QUARANTINE_QUEUE):
                inbox = await (await refused_channel(gateway)).get_queue(queue, ensure=True)
                with pytest.raises(refused):
                    await inbox.get(fail=False)
                inbox = await (await refused_channel(gateway)).get_queue(queue, ensure=True)
                with pytest.raises(refused):
                    await inbox.consume(take)
            for exchange, key in (
                (ingress_exchange("police"), INGRESS_ROUTING_KEY),  # it cannot submit as an agency
                ("", inbox_queue("police")),  # nor drop a message in an inbox by name
            ):
                target = await (await refused_channel(gateway)).get_exchange(exchange, ensure=False)
                with pytest.raises(PublishFailed, match="may not publish there"):
                    await publish(target, b"x", routing_key=key, message_id="m-forged")
            with pytest.raises(refused):  # nor declare, delete or re-shape the topology
                await (await refused_channel(gateway)).declare_queue("sneaky", durable=True)
            with pytest.raises(refused):
                await (await refused_channel(gateway)).queue_delete(inbox_queue("police"))
        finally:
            await gateway.close()

    asyncio.run(check())


def test_the_quarantine_keepers_user_reads_quarantine_and_releases_to_ingress_only(
    area: Area,
) -> None:
    async def check() -> None:
        keeper = await area.login(QUARANTINE_KEEPER)
        try:
            channel = await confirmed_channel(keeper)
            quarantine = await channel.get_queue(QUARANTINE_QUEUE, ensure=True)
            await quarantine.get(fail=False, no_ack=False)  # allowed: it takes copies in
            for agency in ("police", "education"):  # a release goes to its sender's ingress
                ingress = await channel.get_exchange(ingress_exchange(agency), ensure=True)
                await publish(
                    ingress, b"x", routing_key=INGRESS_ROUTING_KEY, message_id=f"m-{agency}"
                )
            refused = aiormq.exceptions.ChannelAccessRefused
            for queue in (inbox_queue("police"), ingress_queue("police")):
                other = await (await refused_channel(keeper)).get_queue(queue, ensure=True)
                with pytest.raises(refused):
                    await other.get(fail=False)
            for exchange, key in ((DELIVER_EXCHANGE, "police"), ("", inbox_queue("police"))):
                target = await (await refused_channel(keeper)).get_exchange(exchange, ensure=False)
                with pytest.raises(PublishFailed, match="may not publish there"):
                    await publish(target, b"x", routing_key=key, message_id="m-forged")
            with pytest.raises(refused):
                await (await refused_channel(keeper)).declare_queue("sneaky", durable=True)
        finally:
            await keeper.close()

    asyncio.run(check())


def test_a_lost_password_file_or_a_changed_password_fails_setup_until_rotated(
    area: Area, broker_admin: BrokerAdmin, tmp_path: Path
) -> None:
    """Setup never resets a password by itself: it refuses and says how, then rotates on demand."""
    old = area.passwords()
    police_file = area.credentials / "police.password"
    police_file.unlink()
    code, output = broker_cli(area.config)
    assert code == 1
    assert (
        f"RabbitMQ user {area.user('police')} exists, but this area holds no password for it"
        in output
    )
    assert "--rotate-passwords" in output
    assert not police_file.exists() and "vhost " not in output  # refused before any change

    police_file.write_text(old["police"] + "\n")
    police_file.chmod(0o600)
    asyncio.run(broker_admin.change_password(area.user("health"), "changed-by-hand"))
    code, output = broker_cli(area.config)
    assert code == 1
    assert f"user {area.user('health')} (health): password kept" in output
    assert f"{area.user('health')}: the password in {area.credentials}/health.password" in output
    assert area.passwords() == old

    exported = tmp_path / "with-hashes.json"
    code, output = broker_cli(
        area.config, "--rotate-passwords", "--export", str(exported), "--with-password-hashes"
    )
    assert code == 0
    new = area.passwords()
    assert all(new[p] != old[p] for p in PRINCIPALS)
    assert not any(p in output for p in new.values())

    async def logins() -> None:
        with pytest.raises(BrokerUnavailable, match="refused the login"):
            await area.login("police", old["police"])
        await (await area.login("police")).close()
        await (await area.login("health")).close()

    asyncio.run(logins())

    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    hashes = {u["name"]: u["password_hash"] for u in json.loads(exported.read_text())["users"]}
    for principal in PRINCIPALS:
        salt = base64.b64decode(hashes[area.user(principal)])[:4]
        assert hashes[area.user(principal)] == password_hash(new[principal], salt)


def test_committed_definitions_are_what_the_code_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generated = tmp_path / "definitions.json"
    assert main(["broker", "export-definitions", "--demo", "-o", str(generated)]) == 0
    assert generated.read_text() == COMMITTED_DEFINITIONS.read_text(), (
        "ops/rabbitmq/definitions.json is stale: regenerate it with "
        "`mash-gateway broker export-definitions --demo -o ops/rabbitmq/definitions.json`"
    )
    users = json.loads(COMMITTED_DEFINITIONS.read_text())["users"]
    assert sorted(u["name"] for u in users) == [f"mash-demo-{p}" for p in PRINCIPALS]
    assert all(u["password_hash"] == "" for u in users)
