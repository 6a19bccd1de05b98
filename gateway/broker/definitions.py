"""Who may do what on the broker, whose users setup may touch, and the definitions file.

Pure. Every principal of an area has its own RabbitMQ user, ``<prefix><id>``;
the prefix names the area (``[broker].user_prefix``), so two areas on one
broker never share a user. RabbitMQ checks three regexes per user and vhost:
- configure: declare or delete a queue or exchange. No gateway user gets
  any (``^$``): ``mash-gateway broker setup`` declares the topology as the
  administrator. RabbitMQ checks nothing for a passive declare, so the
  services still look their exchanges and queues up.
- write: publish to an exchange (and bind a queue to it). An agency user may
  write only to its own ``mash.ingress.<id>``: not to another agency's, so it
  cannot fill another agency's ingress queue (its flood stays in its own,
  topology.py); not to ``amq.default``, so it cannot drop a message
  straight into another agency's inbox by queue name; and not to
  ``mash.deliver``. The router's user (the gateway principal's: the router
  and its escalator, one process) may write to ``mash.deliver`` (deliveries,
  notices, escalations), ``mash.events`` and ``mash.quarantine`` only.
- read: consume from or get a queue (and bind it from an exchange). An agency
  user may read only its own inbox; the router's only the agencies'
  ``gateway.ingress.<id>`` queues.
- The quarantine keeper (``mash-gateway quarantine``) has a user of its own,
  ``<prefix>quarantine-keeper``, not a principal's: it may read only
  ``gateway.quarantine`` (to take copies into the store) and write only the
  agencies' ``mash.ingress.<id>`` (to release one to the router on its
  claimed sender's ingress, sealed as it was; it holds no agency's key and
  cannot make a message of its own).
- The router's and the keeper's rights name every agency's ingress, so they
  are a function of the agencies: ``broker setup`` after adding an agency
  grants them the new one's.

Why the router may not declare its topology (configure): RabbitMQ's
``queue.declare`` of a queue with a dead-letter exchange also needs *read* on
the queue, and every inbox dead-letters to quarantine, so a router allowed to
declare the inboxes could also consume them. Setup declares; the router,
logged in as its own user, checks the topology passively at start-up
(``topology.check``) and names ``broker setup`` if anything is missing.

Setup never takes over a user it cannot prove is this area's (``login_step``):
one with permissions on another vhost belongs to another area, and one that
exists without a password file here may too. An existing user keeps its
password unless ``--rotate-passwords`` asks.

``ops/rabbitmq/definitions.json`` is ``definitions(...)`` for the demo area.
Users without a password hash cannot log in until an operator sets one
(``mash-gateway broker setup`` or ``rabbitmqctl change_password``), so the
exported file carries no secret.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.broker.topology import (
    DELIVER_EXCHANGE,
    DIRECTORY_EXCHANGE,
    DIRECTORY_QUEUE,
    EVENTS_EXCHANGE,
    QUARANTINE_EXCHANGE,
    QUARANTINE_QUEUE,
    Limits,
    checked_agency,
    inbox_queue,
    ingress_exchange,
    ingress_queue,
    plan,
)
from gateway.core.errors import GatewayError

RABBITMQ_HASHING = "rabbit_password_hashing_sha256"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


def exactly(*names: str) -> str:
    """A permission regex matching these names and nothing else."""
    if len(names) == 1:
        return f"^{re.escape(names[0])}$"
    return f"^(?:{'|'.join(re.escape(n) for n in sorted(names))})$"


NOTHING = "^$"
# The administrator (or test user) that owns a vhost; never a gateway service's login.
OWNER_PERMISSIONS = Permissions(".*", ".*", ".*")


def router_permissions(agencies: Iterable[str]) -> Permissions:
    """The router's user (the gateway principal's): consume every agency's ingress queue."""
    return Permissions(
        configure=NOTHING,
        write=exactly(DELIVER_EXCHANGE, EVENTS_EXCHANGE, QUARANTINE_EXCHANGE, DIRECTORY_EXCHANGE),
        read=exactly(*(ingress_queue(a) for a in agencies), DIRECTORY_QUEUE),
    )


# Not an agency: the name of the quarantine keeper's login (and its password file).
QUARANTINE_KEEPER = "quarantine-keeper"


def keeper_permissions(agencies: Iterable[str]) -> Permissions:
    """The keeper's user: take quarantined copies, release one to its sender's ingress."""
    return Permissions(
        configure=NOTHING,
        write=exactly(*(ingress_exchange(a) for a in agencies)),
        read=exactly(QUARANTINE_QUEUE),
    )


def agency_permissions(agency: str) -> Permissions:
    return Permissions(
        configure=NOTHING,
        write=exactly(ingress_exchange(agency)),
        read=exactly(inbox_queue(agency), DIRECTORY_QUEUE),
    )


def agency_user(principal: str, prefix: str) -> str:
    return f"{prefix}{checked_agency(principal)}"


@dataclass(frozen=True)
class Grant:
    """One principal's RabbitMQ user and what it may do."""

    principal: str
    user: str
    permissions: Permissions


class ReservedName(GatewayError):
    """An agency id that is the name of one of the gateway's own logins."""


def grants(gateway: str, agencies: Iterable[str], prefix: str) -> list[Grant]:
    """The router's user (the gateway principal's) first, the quarantine keeper's, then one
    per agency, sorted."""
    named = list(agencies)
    if QUARANTINE_KEEPER in {gateway, *named}:
        raise ReservedName(
            f"agency id {QUARANTINE_KEEPER!r} is reserved for the quarantine keeper's login"
        )
    ids = sorted({checked_agency(a) for a in named})
    return [
        Grant(gateway, agency_user(gateway, prefix), router_permissions(ids)),
        Grant(QUARANTINE_KEEPER, agency_user(QUARANTINE_KEEPER, prefix), keeper_permissions(ids)),
    ] + [Grant(a, agency_user(a, prefix), agency_permissions(a)) for a in ids]


class Step(StrEnum):
    """What setup does to one user's password."""

    CREATE = "create"  # no such user: create it (with the kept password, if there is one)
    KEEP = "keep"  # this area's user: leave its password alone
    ROTATE = "rotate"  # asked to: a new password


class UserCollision(GatewayError):
    """A user setup would touch may belong to another area; nothing was changed."""


def login_step(
    user: str,
    vhost: str,
    on_broker: Sequence[str] | None,
    password_kept: bool,
    rotate: bool,
) -> Step:
    """What setup may do to ``user``, given the vhosts it has permissions on (None: no user).

    Raises UserCollision, naming the user and the fix, for a user that may be
    another area's: one with permissions elsewhere is, whatever was asked; one
    without a password file here may be, unless ``rotate`` takes it over.
    """
    if on_broker is None:
        return Step.CREATE
    elsewhere = sorted(v for v in on_broker if v != vhost)
    if elsewhere:
        raise UserCollision(
            f"RabbitMQ user {user} already has permissions on vhost "
            f"{', '.join(repr(v) for v in elsewhere)}: another area uses the same user names. "
            "Give this area its own [broker].user_prefix"
        )
    if rotate:
        return Step.ROTATE
    if not password_kept:
        raise UserCollision(
            f"RabbitMQ user {user} exists, but this area holds no password for it: it may be "
            "another area's. Give this area its own [broker].user_prefix, or, if the user is "
            "this area's and its password file was lost, rerun with --rotate-passwords"
        )
    return Step.KEEP


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's salted SHA-256 hash, for a definitions file; ``salt`` is 4 random bytes."""
    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    vhost: str,
    gateway: str,
    agencies: Iterable[str],
    limits: Limits,
    prefix: str,
    password_hashes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A definitions document RabbitMQ can import: topology, users and permissions.

    ``gateway`` is the gateway principal, whose user the router logs in as.
    ``password_hashes`` maps user names to ``password_hash`` values; users not
    in it get an empty hash, which RabbitMQ treats as "no password login".
    """
    ids = sorted({checked_agency(a) for a in agencies})
    hashes = password_hashes or {}
    wanted = plan(ids, limits)
    users = grants(gateway, ids, prefix)
    return {
        "rabbit_version": "3.10.8",
        "vhosts": [{"name": vhost}],
        "users": [
            {
                "name": g.user,
                "password_hash": hashes.get(g.user, ""),
                "hashing_algorithm": RABBITMQ_HASHING,
                "tags": [],
            }
            for g in users
        ],
        "permissions": [
            {
                "user": g.user,
                "vhost": vhost,
                "configure": g.permissions.configure,
                "write": g.permissions.write,
                "read": g.permissions.read,
            }
            for g in users
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
