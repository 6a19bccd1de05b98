"""A demo area whose broker users `broker setup` issued, in a vhost and user prefix of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.broker.definitions import QUARANTINE_KEEPER
from gateway.broker.vhost import BrokerAdmin, vhost_url
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from tests.integration.conftest import AMQP_URL


@contextmanager
def area_with_logins(broker_admin: BrokerAdmin, directory: Path) -> Iterator[AreaConfig]:
    """Created in ``directory``; the vhost and its users are deleted afterwards."""
    vhost = f"mash-test-{uuid.uuid4().hex[:8]}"
    prefix = f"{vhost}-"
    assert main(["init", str(directory), "--broker-url", vhost_url(AMQP_URL, vhost)]) == 0
    toml = directory / "gateway.toml"
    text = toml.read_text()
    toml.write_text(text.replace("\n[store]", f'user_prefix = "{prefix}"\n\n[store]', 1))
    config = load_config(str(toml))
    try:
        assert main(["--config", str(toml), "broker", "setup"]) == 0
        yield config
    finally:
        asyncio.run(broker_admin.delete_vhost(vhost))
        grown = load_config(str(toml)).registry.agencies  # and any agency a test added
        for principal in {*config.registry.agencies, *grown, QUARANTINE_KEEPER}:
            asyncio.run(broker_admin.delete_user(f"{prefix}{principal}"))
