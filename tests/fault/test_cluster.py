"""A three-node RabbitMQ cluster loses a node, then another: nothing lost, nothing doubled.

The router (its own process), the hub's edge and police's edge reach the
cluster through one front (rabbit_cluster.Front, the load balancer's part).
5,000 requests flow hub -> police with receipts back. Mid-run the node that
leads the hub's ingress queue (``gateway.ingress.hub``) is killed with
``kill -9``; once the flow has moved on it is started again, and then a
second node is killed and started the same way. Quorum queues keep every
confirmed message while two of three nodes are up, and the clients' robust
connections come back through the front by themselves. Every request must be
handed over exactly once, every receipt recorded, and every consumer
attached again at the end.

What a node loss does to the clients, and what they do about it: a queue
without a leader nacks publishes for a few seconds (the edges wait them out;
the router asks the inbox's depth and retries, never refusing a message for
it); a stream consumer whose node is away makes RabbitMQ close its whole
connection, so each service follows the directory stream on a connection of
its own; and a reconnect that gets no answer is dropped and tried again
(gateway/broker/connection.py). The router's log says each time its
connection came back (``broker.reconnected``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broker import topology
from gateway.broker.vhost import vhost_url
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Edge, Submission
from tests.fault.conftest import EXPECTED_CONSUMERS, FaultArea, RouterProcess
from tests.fault.rabbit_cluster import Cluster, Front, Node, ctl

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(
        shutil.which("rabbitmq-server") is None or os.geteuid() != 0,
        reason="starts RabbitMQ nodes of the machine's package: needs it installed, and root",
    ),
]

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()
TOTAL = 5000
IN_FLIGHT = 25
FIRST_KILL_AT, SECOND_KILL_AT = 1000, 2500  # requests police has received
WAIT_S = 600.0
CONSUMERS_SETTLE_S = 30  # how long a closed connection's consumer may stay listed


@dataclass
class ClusterArea:
    cluster: Cluster
    vhost: str
    area: FaultArea


@pytest.fixture
async def cluster_area(tmp_path: Path) -> AsyncIterator[ClusterArea]:
    # A short folder: Erlang and the rabbitmq user must reach it, pytest's tmp is root-only.
    cluster = Cluster.create(Path(f"/tmp/mash-cluster-{uuid.uuid4().hex[:8]}"))
    front: Front | None = None
    area: FaultArea | None = None
    try:
        await asyncio.to_thread(cluster.form)
        vhost = f"mash-cluster-{uuid.uuid4().hex[:8]}"
        first = cluster.nodes[0]
        await asyncio.to_thread(ctl, first, "add_vhost", vhost)
        await asyncio.to_thread(
            ctl, first, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
        )
        front = Front([n.amqp_port for n in cluster.nodes])
        await front.start()
        url = vhost_url(f"amqp://guest:guest@127.0.0.1:{front.port}/", vhost)
        assert main(["init", str(tmp_path / "area"), "--broker-url", url]) == 0
        config_path = tmp_path / "area" / "gateway.toml"
        config: AreaConfig = load_config(str(config_path))
        area = FaultArea(
            config, vhost, url, tmp_path, RouterProcess(config_path, tmp_path / "router.log")
        )
        await area.router.start()
        yield ClusterArea(cluster, vhost, area)
    finally:
        if area is not None:
            area.router.stop()
            for edge in area.edges.values():
                await edge.__aexit__(None, None, None)
                await edge.store.close()
        if front is not None:
            await front.stop()
        await asyncio.to_thread(cluster.destroy)


async def submit_all(hub: Edge, cases: list[str], sent: dict[str, str]) -> None:
    """IN_FLIGHT submitters; ``Edge.submit`` republishes the same bytes until confirmed."""
    queue = list(reversed(cases))

    async def worker() -> None:
        while queue:
            case = queue.pop()
            fields = await hub.submit(Submission(REQUEST, ("police",), correlation_id=case))
            sent[case] = fields.message_id

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def consumers(node: Node, vhost: str) -> dict[str, int]:
    listed = ctl(node, "-q", "list_queues", "-p", vhost, "name", "consumers", "--no-table-headers")
    return {n: int(c) for n, c in (line.split() for line in listed.splitlines()) if int(c)}


async def settled_consumers(node: Node, vhost: str) -> dict[str, int]:
    """The consumers once the cluster has settled: a stream consumer of a connection that a
    node loss closed can stay listed for a few seconds after its client has subscribed anew
    (seen once in CI as 5 on gateway.directory against 3). A duplicate that lasts fails."""
    listed = await asyncio.to_thread(consumers, node, vhost)
    for _ in range(CONSUMERS_SETTLE_S):
        if listed == EXPECTED_CONSUMERS:
            break
        await asyncio.sleep(1)
        listed = await asyncio.to_thread(consumers, node, vhost)
    return listed


@pytest.mark.timeout(1500)
async def test_two_node_losses_in_turn_lose_and_double_nothing(cluster_area: ClusterArea) -> None:
    cluster, vhost, area = cluster_area.cluster, cluster_area.vhost, cluster_area.area
    await area.edge("police")
    hub = await area.edge("hub")
    police_inbox = area.inboxes["police"]
    deadline = time.monotonic() + WAIT_S
    cases = [f"CASE-{n}" for n in range(TOTAL)]
    sent: dict[str, str] = {}
    submitting = asyncio.create_task(submit_all(hub, cases, sent))

    killed: list[Node] = []
    for kill_at in (FIRST_KILL_AT, SECOND_KILL_AT):
        await area.wait_for(f"{kill_at} handed over", area.received("police", kill_at), deadline)
        survivors = [n for n in cluster.nodes if n not in killed]
        leader = await asyncio.to_thread(
            cluster.leader_of, topology.ingress_queue("hub"), vhost, survivors[-1]
        )
        victim = leader if leader not in killed else survivors[0]
        await asyncio.to_thread(cluster.kill, victim)
        killed.append(victim)
        moved_on = kill_at + 300
        await area.wait_for(
            f"the flow goes on without {victim.name}", area.received("police", moved_on), deadline
        )
        await asyncio.to_thread(cluster.start, victim)
    assert killed[0] != killed[1], "the second loss must be another node"

    await submitting
    hub_inbox = area.inboxes["hub"]

    def progress() -> str:
        handed = {m.header.fields.message_id for m in police_inbox.messages}
        receipted = {m.header.fields.in_reply_to for m in hub_inbox.of_type("DeliveryReceipt")}
        states = dict(area.router_states("InformationRequest"))
        return (
            f"sent {len(sent)}, handed over {len(handed)}, of those not sent "
            f"{len(handed - set(sent.values()))}, receipts at the hub {len(receipted)}, "
            f"router states {states}, router reconnects {reconnects()}"
        )

    def reconnects() -> int:
        return area.router.log_path.read_text(errors="replace").count('"broker.reconnected"')

    def all_receipted() -> bool:
        handed = {m.header.fields.message_id for m in police_inbox.messages}
        receipted = {m.header.fields.in_reply_to for m in hub_inbox.of_type("DeliveryReceipt")}
        return (
            set(sent.values()) <= handed
            and receipted >= handed
            and area.router_states("InformationRequest")[State.DELIVERED.value] >= len(handed)
        )

    try:
        await area.wait_for("every request delivered and receipted", all_receipted, deadline)
    except AssertionError as exc:
        raise AssertionError(f"{progress()}\n{exc}") from None

    assert area.router.alive(), "the router died when a node did"
    handed_over = Counter(m.header.fields.message_id for m in police_inbox.messages)
    assert [i for i, n in handed_over.items() if n > 1] == []
    assert set(handed_over) == set(sent.values())
    assert len(handed_over) == TOTAL
    assert area.router_states("InformationRequest") == {State.DELIVERED.value: TOTAL}
    receipts = hub_inbox.of_type("DeliveryReceipt")
    assert {m.header.fields.in_reply_to for m in receipts} == set(handed_over)
    assert await settled_consumers(cluster.nodes[0], vhost) == EXPECTED_CONSUMERS
    print(f"killed {[n.name for n in killed]}; {progress()}")  # for the README's account
