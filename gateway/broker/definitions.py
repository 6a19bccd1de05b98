"""Who may do what on the broker, and the RabbitMQ definitions file that says so.

Pure. RabbitMQ checks three regexes per user and vhost:
- configure: declare or delete a queue or exchange. An agency user gets
  nothing (``^$``): the gateway owns the topology. RabbitMQ does not check
  configure for a passive declare, so an edge can still look its inbox up.
- write: publish to an exchange (and bind a queue to it). An agency user may
  write only to ``mash.ingress``. Not to ``amq.default`` either, so it cannot
  drop a message straight into another agency's inbox by queue name, and not
  to ``mash.deliver``, the router's alone.
- read: consume from or get a queue (and bind it from an exchange). An agency
  user may read only its own inbox.
The gateway user may do everything in its vhost.

``ops/rabbitmq/definitions.json`` is ``definitions(...)`` for the demo area.
Users without a password hash cannot log in until an operator sets one
(``mash-gateway broker setup`` or ``rabbitmqctl change_password``), so the
exported file carries no secret.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.broker.topology import INGRESS_EXCHANGE, Limits, checked_agency, inbox_queue, plan
from gateway.config.area_config import AGENCY_USER_PREFIX

GATEWAY_USER = "mash-gateway"
RABBITMQ_HASHING = "rabbit_password_hashing_sha256"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


GATEWAY_PERMISSIONS = Permissions(".*", ".*", ".*")


def exactly(name: str) -> str:
    return f"^{re.escape(name)}$"


def agency_permissions(agency: str) -> Permissions:
    return Permissions(
        configure="^$", write=exactly(INGRESS_EXCHANGE), read=exactly(inbox_queue(agency))
    )


def agency_user(agency: str, prefix: str = AGENCY_USER_PREFIX) -> str:
    return f"{prefix}{checked_agency(agency)}"


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's salted SHA-256 hash, for a definitions file; ``salt`` is 4 random bytes."""
    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    vhost: str,
    agencies: Iterable[str],
    limits: Limits,
    password_hashes: Mapping[str, str] | None = None,
    user_prefix: str = AGENCY_USER_PREFIX,
    gateway_user: str = GATEWAY_USER,
) -> dict[str, Any]:
    """A definitions document RabbitMQ can import: topology, users and permissions.

    ``password_hashes`` maps user names to ``password_hash`` values; users not
    in it get an empty hash, which RabbitMQ treats as "no password login".
    """
    ids = sorted({checked_agency(a) for a in agencies})
    hashes = password_hashes or {}
    wanted = plan(ids, limits)
    grants = [(gateway_user, GATEWAY_PERMISSIONS)] + [
        (agency_user(a, user_prefix), agency_permissions(a)) for a in ids
    ]
    return {
        "rabbit_version": "3.10.8",
        "vhosts": [{"name": vhost}],
        "users": [
            {
                "name": user,
                "password_hash": hashes.get(user, ""),
                "hashing_algorithm": RABBITMQ_HASHING,
                "tags": [],
            }
            for user, _ in grants
        ],
        "permissions": [
            {
                "user": user,
                "vhost": vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
            for user, p in grants
        ],
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type.value,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for e in wanted.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": dict(q.arguments),
            }
            for q in wanted.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": vhost,
                "destination": b.queue,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for b in wanted.bindings
        ],
    }
