"""Who may do what on the broker, and which users `broker setup` may touch: the pure rules.

What RabbitMQ then enforces is tested against the real broker in
tests/integration/test_topology.py, test_broker_cli.py and test_broker_areas.py.
"""

from __future__ import annotations

import re

import pytest

from gateway.broker.definitions import (
    QUARANTINE_KEEPER,
    ReservedName,
    Step,
    UserCollision,
    agency_permissions,
    definitions,
    exactly,
    grants,
    keeper_permissions,
    login_step,
    router_permissions,
)
from gateway.broker.topology import (
    DELIVER_EXCHANGE,
    DIRECTORY_EXCHANGE,
    DIRECTORY_QUEUE,
    EVENTS_EXCHANGE,
    QUARANTINE_EXCHANGE,
    QUARANTINE_QUEUE,
    Limits,
    inbox_queue,
    ingress_exchange,
    ingress_queue,
    plan,
)

pytestmark = pytest.mark.unit

AGENCIES = ["police", "health", "hub"]


def allows(pattern: str, name: str) -> bool:
    """How RabbitMQ applies a permission regex: a match anywhere in the resource name."""
    return re.search(pattern, name) is not None


def every_name() -> set[str]:
    wanted = plan(AGENCIES, Limits())
    return {e.name for e in wanted.exchanges} | {q.name for q in wanted.queues} | {""}


def test_the_routers_user_writes_deliveries_events_quarantine_and_the_directory() -> None:
    router = router_permissions(AGENCIES)
    names = every_name() | {"amq.default", "amq.topic", "mash.deliverx", "xmash.events"}
    writable = {n for n in names if allows(router.write, n)}
    readable = {n for n in names if allows(router.read, n)}
    configurable = {n for n in names if allows(router.configure, n)}
    assert writable == {DELIVER_EXCHANGE, EVENTS_EXCHANGE, QUARANTINE_EXCHANGE, DIRECTORY_EXCHANGE}
    assert readable == {ingress_queue(a) for a in AGENCIES} | {DIRECTORY_QUEUE}
    assert configurable == {""}  # ^$: only the nameless default exchange, which no one declares
    assert not any(allows(router.read, inbox_queue(a)) for a in AGENCIES)
    assert not allows(router.read, QUARANTINE_QUEUE)


def test_an_agency_writes_its_own_ingress_and_reads_its_own_inbox_and_the_directory_only() -> None:
    police = agency_permissions("police")
    names = every_name()
    assert {n for n in names if allows(police.write, n)} == {ingress_exchange("police")}
    assert {n for n in names if allows(police.read, n)} == {inbox_queue("police"), DIRECTORY_QUEUE}


def test_every_agency_has_its_own_bounded_ingress_feeding_only_its_own_queue() -> None:
    wanted = plan(AGENCIES, Limits(ingress_max_length=7))
    queues = {q.name: q.arguments for q in wanted.queues}
    for agency in AGENCIES:
        assert queues[ingress_queue(agency)]["x-max-length"] == 7
        assert queues[ingress_queue(agency)]["x-overflow"] == "reject-publish"
        fed = {b.queue for b in wanted.bindings if b.exchange == ingress_exchange(agency)}
        assert fed == {ingress_queue(agency)}


def test_exactly_escapes_and_anchors_every_name() -> None:
    assert exactly("a.b") == r"^a\.b$"
    assert exactly("b", "a") == r"^(?:a|b)$"
    assert not allows(exactly("a.b"), "axb") and not allows(exactly("a", "b"), "ab")


def test_every_principal_gets_a_user_named_with_the_area_prefix() -> None:
    made = grants("gateway", ["police", "health", "police"], "mash-north-")
    assert [(g.principal, g.user) for g in made] == [
        ("gateway", "mash-north-gateway"),
        ("quarantine-keeper", "mash-north-quarantine-keeper"),
        ("health", "mash-north-health"),
        ("police", "mash-north-police"),
    ]
    assert made[0].permissions == router_permissions(["health", "police"])
    assert made[1].permissions == keeper_permissions(["health", "police"])
    doc = definitions("v", "gateway", ["police"], Limits(), "mash-north-")
    assert [u["name"] for u in doc["users"]] == [
        "mash-north-gateway",
        "mash-north-quarantine-keeper",
        "mash-north-police",
    ]
    assert doc["permissions"][0]["read"] == router_permissions(["police"]).read


@pytest.mark.parametrize(
    ("on_broker", "kept", "rotate", "step"),
    [
        (None, False, False, Step.CREATE),  # a new user
        (None, True, False, Step.CREATE),  # deleted on the broker: back with its kept password
        (None, False, True, Step.CREATE),
        (("v",), True, False, Step.KEEP),  # this area's: its password is left alone
        ((), True, False, Step.KEEP),  # its permissions removed by hand: still this area's
        (("v",), True, True, Step.ROTATE),
        (("v",), False, True, Step.ROTATE),  # its file lost: taken over only when asked
    ],
)
def test_setup_creates_keeps_or_rotates(
    on_broker: tuple[str, ...] | None, kept: bool, rotate: bool, step: Step
) -> None:
    assert login_step("u", "v", on_broker, kept, rotate) is step


@pytest.mark.parametrize("rotate", [False, True])
@pytest.mark.parametrize("kept", [False, True])
def test_a_user_with_permissions_elsewhere_is_never_touched(kept: bool, rotate: bool) -> None:
    with pytest.raises(UserCollision, match=r"u already has permissions on vhost 'w'.*user_prefix"):
        login_step("u", "v", ("v", "w"), kept, rotate)


def test_an_existing_user_without_a_password_here_is_refused_unless_rotated() -> None:
    with pytest.raises(UserCollision, match=r"holds no password for it.*--rotate-passwords"):
        login_step("u", "v", ("v",), password_kept=False, rotate=False)


def test_the_quarantine_keeper_reads_quarantine_and_writes_every_agencys_ingress_only() -> None:
    keeper = keeper_permissions(AGENCIES)
    names = every_name() | {"amq.default", "mash.ingress", "mash.ingress.policex"}
    assert {n for n in names if allows(keeper.write, n)} == {ingress_exchange(a) for a in AGENCIES}
    assert {n for n in names if allows(keeper.read, n)} == {QUARANTINE_QUEUE}
    assert keeper.configure == "^$"


def test_no_agency_may_take_the_keepers_name() -> None:
    with pytest.raises(ReservedName, match="reserved for the quarantine keeper"):
        grants("gateway", ["police", QUARANTINE_KEEPER], "mash-")
