"""A refused message's publishes (its quarantined copy, the sender's NonDelivery) outlive a
broker hiccup in place: retried until confirmed, never raised to requeue the message, which
would spend the ingress queue's delivery limit (5) while the router's channel is restored."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiormq
import pytest
from pamqp.commands import Basic

from gateway.broker.definitions import agency_user
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.envelope import HeaderFields, recipient_keys, seal_bytes
from gateway.core.resources import schemas_dir
from gateway.infra import keystore
from gateway.infra.clock import utc_now
from gateway.services.router import Router, RouterChannels
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


class Hiccup:
    """An exchange whose first publish to each routing key is left unconfirmed (the channel
    closed under it, as while the broker restarts), and whose later ones are confirmed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tries: Counter[str] = Counter()
        self.confirmed: list[tuple[str, str | None]] = []

    async def publish(self, message: Any, routing_key: str, **_: object) -> Basic.Ack:
        self.tries[routing_key] += 1
        if self.tries[routing_key] == 1:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
        self.confirmed.append((routing_key, message.message_id))
        return Basic.Ack()


def tampered_request(config: AreaConfig) -> bytes:
    """A request from hub to police whose ciphertext no longer matches its signed digest."""
    now = utc_now()
    fields = HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
        message_type="InformationRequest",
        sender="hub",
        recipients=("police",),
        created_at=now,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e",),
    )
    signer = keystore.load_signing_identity(config, "hub", now)
    sealed = seal_bytes(fields, REQUEST, signer, recipient_keys(config.registry, ("police",), now))
    return sealed[:-1] + bytes([sealed[-1] ^ 1])


async def test_a_refusals_publishes_are_retried_in_place_until_confirmed(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "area")]) == 0
    config = load_config(str(tmp_path / "area" / "gateway.toml"))
    store = SqliteStore(str(tmp_path / "tracking.db"))
    await store.open()
    try:
        signer = keystore.load_signing_identity(config, config.gateway, utc_now())
        router = Router(config, store, signer)
        deliver, quarantine = Hiccup("mash.deliver"), Hiccup("mash.quarantine")
        channels = RouterChannels(deliver, quarantine, None, None)  # type: ignore[arg-type]
        body = tampered_request(config)
        login = agency_user("hub", config.broker_user_prefix)
        await router.handle(body, channels, login)  # raises nothing: nothing is requeued
    finally:
        await store.close()
    assert [key for key, _ in quarantine.confirmed] == [""]
    assert quarantine.tries[""] == 2
    assert [key for key, _ in deliver.confirmed] == ["hub"]  # the NonDelivery to its sender
    assert deliver.tries["hub"] == 2
