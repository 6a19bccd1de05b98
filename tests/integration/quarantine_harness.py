"""A message quarantined for want of an agreement, on a running exchange, and its fix.

Shared by the quarantine keeper's tests (test_quarantine.py) and the
console's (test_console_http.py, test_console_browser.py): police send a
Referral to education, which no agreement allows; the router quarantines
it; ``add_agreement`` is the operator's fix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.broker.vhost import BrokerAdmin
from gateway.core.lifecycle import State
from gateway.core.resources import schemas_dir
from gateway.services.edge import Submission
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import Exchange, eventually, running_exchange

REFERRAL_PATH = schemas_dir() / "examples" / "valid" / "referral.xml"
REFERRAL = REFERRAL_PATH.read_bytes()
AGREEMENT = """
[[agreements]]
id = "isa-test-police-education"
senders = ["police"]
recipients = ["education"]
message_types = ["Referral"]
purposes = ["child-safeguarding"]
lawful_bases = ["uk-gdpr-6-1-e", "uk-gdpr-9-2-g-dpa-sch1-18"]
valid_from = 2020-01-01
valid_until = 2099-12-31
"""


@asynccontextmanager
async def quarantine_exchange(admin: BrokerAdmin, tmp_path: Path) -> AsyncIterator[Exchange]:
    """A running exchange whose gateway.toml names the in-process router's store, so the
    CLI and the console read what the router writes."""
    async with running_exchange(admin, AMQP_URL, tmp_path) as running:
        toml = running.config.path
        text = toml.read_text(encoding="utf-8")
        store_url = f"sqlite:///{tmp_path / 'router.db'}"
        toml.write_text(re.sub(r'(?m)^url = "sqlite:[^"]*"$', f'url = "{store_url}"', text))
        yield running


async def refused_referral(exchange: Exchange) -> str:
    """Police send a Referral to education, which no agreement allows: quarantined."""
    police = await exchange.edge("police")
    await exchange.edge("education")
    sent = await police.submit(Submission(REFERRAL, ("education",)))

    async def rejected() -> bool:
        record = await exchange.router_store.message(sent.message_id)
        return record is not None and record.state is State.REJECTED

    await eventually(rejected)
    return sent.message_id


async def add_agreement(exchange: Exchange) -> None:
    """The fix: the agreement in gateway.toml, and the router restarted to read it (or SIGHUP)."""
    with exchange.config.path.open("a", encoding="utf-8") as toml:
        toml.write(AGREEMENT)
    await exchange.restart_router()
