"""Two areas set up on one RabbitMQ keep their users, passwords and permissions apart.

Each area is `mash-gateway init` with an area id of its own ``t<uuid8>`` on a
vhost of its own; its users are ``mash-t<uuid8>-<principal>``, the prefix
derived from the area id. A third area that names the first one's prefix in
``[broker].user_prefix`` is refused before anything changes, even with
``--rotate-passwords``. Vhosts and users are removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broker.connection import BrokerUnavailable, connect
from gateway.broker.definitions import QUARANTINE_KEEPER
from gateway.broker.vhost import BrokerAdmin, Credentials, vhost_url
from gateway.cli import main
from gateway.demo.area import DEMO_AGENCIES
from tests.integration.conftest import AMQP_URL

pytestmark = pytest.mark.integration

PRINCIPALS = sorted([*(a.id for a in DEMO_AGENCIES), QUARANTINE_KEEPER])


@dataclass(frozen=True)
class Area:
    config: str
    vhost: str
    prefix: str

    @property
    def credentials(self) -> Path:
        return Path(self.config).parent / "keys" / "private" / "broker"

    def user(self, principal: str) -> str:
        return f"{self.prefix}{principal}"

    def passwords(self) -> dict[str, str]:
        return {p: (self.credentials / f"{p}.password").read_text().strip() for p in PRINCIPALS}


def make_area(directory: Path, user_prefix: str | None = None) -> Area:
    """An area of its own id on a vhost of its own; ``user_prefix`` set in [broker] if given."""
    tag = uuid.uuid4().hex[:8]
    vhost = f"mash-test-{tag}"
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    toml = directory / "gateway.toml"
    text = toml.read_text().replace('id = "demo"', f'id = "t{tag}"', 1)
    if user_prefix is not None:
        text = text.replace("\n[store]", f'user_prefix = "{user_prefix}"\n\n[store]', 1)
    toml.write_text(text)
    return Area(str(toml), vhost, user_prefix or f"mash-t{tag}-")


def setup(area: Area, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", area.config, "broker", "setup", *args])
    return code, out.getvalue() + err.getvalue()


def rabbitmqctl(*args: str) -> list[list[str]]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in listed.splitlines() if line]


def vhosts_of(user: str) -> list[str]:
    return sorted(row[0] for row in rabbitmqctl("list_user_permissions", user))


async def opens(area: Area, principal: str, vhost: str, password: str) -> bool:
    """Whether ``principal``'s user of ``area`` can log in to ``vhost`` with ``password``."""
    try:
        connection = await connect(
            vhost_url(AMQP_URL, vhost, Credentials(area.user(principal), password))
        )
    except BrokerUnavailable:
        return False
    await connection.close()
    return True


@dataclass(frozen=True)
class TwoAreas:
    first: Area
    second: Area
    first_passwords: dict[str, str]  # as the first setup left them, before the second's


@pytest.fixture(scope="module")
def areas(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoAreas]:
    root = tmp_path_factory.mktemp("two-areas")
    first, second = make_area(root / "a"), make_area(root / "b")
    try:
        assert setup(first)[0] == 0
        before = first.passwords()
        assert setup(second)[0] == 0
        yield TwoAreas(first, second, before)
    finally:
        for area in (first, second):
            asyncio.run(broker_admin.delete_vhost(area.vhost))
            for principal in PRINCIPALS:
                asyncio.run(broker_admin.delete_user(area.user(principal)))


def test_areas_get_user_names_of_their_own(areas: TwoAreas) -> None:
    assert areas.first.prefix != areas.second.prefix
    listed = {row[0] for row in rabbitmqctl("list_users")}
    for area in (areas.first, areas.second):
        assert {area.user(p) for p in PRINCIPALS} <= listed


def test_a_second_areas_setup_leaves_the_first_areas_passwords_and_grants_alone(
    areas: TwoAreas,
) -> None:
    first, second = areas.first, areas.second
    assert first.passwords() == areas.first_passwords
    for principal in PRINCIPALS:
        assert vhosts_of(first.user(principal)) == [first.vhost]
        assert vhosts_of(second.user(principal)) == [second.vhost]

    async def logins() -> None:
        for principal in ("gateway", "police"):
            password = areas.first_passwords[principal]
            assert await opens(first, principal, first.vhost, password)
            assert not await opens(first, principal, second.vhost, password)
            theirs = second.passwords()[principal]
            assert not await opens(second, principal, first.vhost, theirs)

    asyncio.run(logins())


def test_an_area_reusing_another_areas_user_names_is_refused_and_changes_nothing(
    areas: TwoAreas, broker_admin: BrokerAdmin, tmp_path: Path
) -> None:
    first = areas.first
    third = make_area(tmp_path / "c", user_prefix=first.prefix)  # short: gpg-agent's sockets
    try:
        for args in ((), ("--rotate-passwords",)):
            code, output = setup(third, *args)
            assert code == 1
            assert (
                f"RabbitMQ user {first.user('gateway')} already has permissions on vhost "
                f"'{first.vhost}': another area uses the same user names" in output
            )
            assert "Give this area its own [broker].user_prefix" in output
            assert not third.credentials.exists() or not list(third.credentials.iterdir())
        assert third.vhost not in {row[0] for row in rabbitmqctl("list_vhosts")}
        assert vhosts_of(first.user("police")) == [first.vhost]

        async def still_opens() -> None:
            for principal in PRINCIPALS:
                password = areas.first_passwords[principal]
                assert await opens(first, principal, first.vhost, password)

        asyncio.run(still_opens())
    finally:
        asyncio.run(broker_admin.delete_vhost(third.vhost))
