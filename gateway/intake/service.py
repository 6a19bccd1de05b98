"""The intake service: one edge per sending agency, the keyring, and the SMTP listener.

Shared by `mash-gateway intake` and the integration tests, so both run the
same wiring. Each agency that owns an allowlisted domain gets a sending edge
of the intake's (``Edge(..., intake=True)``, the agency's broker login): a
mail from that domain is sealed as that agency and signed with the intake's
own key for it (``keys generate --agency A --intake``), which the registry
lets sign only mail-borne assurance, so the intake cannot act as an agency
that has an edge of its own; it holds none of that agency's keys. For an
e-mail-only agency (``inbox = true``) the intake is the agency's only edge:
it holds that agency's own keys and consumes its inbox (inbox.py). The
replay memory (replay_memory.py) is opened for the intake's life; DKIM keys
are looked up through ``dkim_lookup`` (DNS unless given).
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.config.area_config import AreaConfig, ConfigError
from gateway.config.intake_config import IntakeConfig
from gateway.core.envelope import HeaderFields
from gateway.core.errors import GatewayError
from gateway.infra.clock import utc_now
from gateway.intake.acceptance import Acceptance
from gateway.intake.devkeys import stop_agent
from gateway.intake.dkim_check import DkimVerifier, Lookup
from gateway.intake.inbox import NoticeInbox
from gateway.intake.mailer import Mailer
from gateway.intake.pgp import Keyring
from gateway.intake.replay_memory import ReplayMemory
from gateway.intake.server import serve
from gateway.services.edge import Edge, Submission
from gateway.store import HandledMarks


@dataclass
class RunningIntake:
    config: IntakeConfig
    server: asyncio.Server
    acceptance: Acceptance
    edges: dict[str, Edge]  # the sending edge of each agency with a domain (intake keys)

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one picked for port 0)."""
        port: int = self.server.sockets[0].getsockname()[1]
        return port


def intake_config(config: AreaConfig) -> IntakeConfig:
    if config.intake is None:
        raise ConfigError(f"{config.path}: intake: missing table (the [intake] settings)")
    return config.intake


def read_reply_key(path: Path) -> bytes | None:
    """The reply-token secret; None when there is none (no requests go out by mail)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise ConfigError(f"{path}: readable by group or others (mode {mode:04o}); chmod 600 it")
    return path.read_bytes()


def check_intake_key(edge: Edge) -> None:
    """Refuse to start without a usable intake key for an agency whose mail is taken."""
    try:
        edge.identity.signing.signer(edge.registry, utc_now())
    except GatewayError as exc:
        raise ConfigError(
            f"{edge.config.path}: the intake has no signing key of its own for {edge.agency} "
            f"({exc}); run `mash-gateway keys generate --agency {edge.agency} --intake` "
            "on the intake's host"
        ) from None


@asynccontextmanager
async def running_intake(
    config: AreaConfig, store: HandledMarks, dkim_lookup: Lookup | None = None
) -> AsyncIterator[RunningIntake]:
    settings = intake_config(config)
    keyring = Keyring(settings.gnupg_home)
    replays = ReplayMemory(settings.replay_store, settings.replay_window)
    dkim = DkimVerifier(dkim_lookup) if dkim_lookup is not None else DkimVerifier()
    async with AsyncExitStack() as stack:
        await replays.open()
        stack.push_async_callback(replays.close)
        edges: dict[str, Edge] = {}
        for agency in sorted({rule.agency for rule in settings.domains}):
            edges[agency] = await stack.enter_async_context(
                Edge(config, agency, store, intake=True)
            )
            check_intake_key(edges[agency])

        async def submit(agency: str, submission: Submission, assurance: str) -> HeaderFields:
            return await edges[agency].submit(replace(submission, assurance=assurance))

        acceptance = Acceptance(settings, keyring, submit, replays, dkim)
        mailer = (
            Mailer(settings.relay, settings.hostname, keyring, settings.max_message_bytes)
            if settings.relay is not None
            else None
        )
        reply_key = read_reply_key(settings.reply_key)
        for rule in settings.domains:
            if rule.inbox and mailer is not None:
                contacts = config.registry.agency(rule.agency).contacts
                inbox = await stack.enter_async_context(Edge(config, rule.agency, store))
                notices = NoticeInbox(rule, contacts, acceptance, mailer, reply_key)
                await inbox.consume(notices, takes_attachments=True)
        server = await serve(settings, acceptance, mailer, reply_key)
        try:
            yield RunningIntake(settings, server, acceptance, edges)
        finally:
            server.close()
            await server.wait_closed()
            # gpg started an agent for the keyring; it holds the keys in memory.
            await asyncio.to_thread(stop_agent, settings.gnupg_home)
