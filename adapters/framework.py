"""Running adapters: one agency's identity, its transports each way, and its profile's mappings.

An adapter logs in to the exchange as its agency (gateway.services.edge.Edge: the
agency's private keys under keys/private, its broker password if
`broker setup` issued one), takes inbound documents through its transport
into the intake, and hands the agency's inbox to its outbound transport.
The edge gives exactly-once hand-over and sends the receipt only after the
outbound handler returns, so every handler returns only once the agency
system holds the message durably, and writes are keyed by message id.

``run_adapters`` is the entry point for a process that runs several (the
`mash-gateway adapter` command, and `mash-gateway run` when it hosts them).
Each adapter there is supervised: one that fails is logged, counted
(``mash_gateway_adapter_errors_total{stage="crash"}``) and restarted after a
backoff (RESTART_FIRST_S, doubling to RESTART_MAX_S), and the others run on
untouched. Only a configuration error before an adapter has first started
(a missing profile, token or secret) stops the process, naming the problem,
so a half-configured area is not left running.

There, SIGHUP re-reads gateway.toml (``Reloads``): each running adapter's
edge takes the new registry and re-reads its private keys (``Edge.reload``),
so a revoked key signs nothing more and a rotated one's successor takes
over, and an adapter restarted later starts from the new config. Transports,
profiles and ``[[adapters]]`` tables are read at start only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Protocol

import structlog

from adapters.inbound import Intake, failed
from adapters.ledger import Ledger
from adapters.profile import load_profile, profile_dir
from adapters.transports.filedrop import FileDropInbound, FileDropOutbound
from adapters.transports.http_inbound import HttpInbound
from adapters.transports.http_outbound import WebhookOutbound
from adapters.transports.mesh import MeshInbound, MeshOutbound
from gateway.config.adapter_config import AdapterConfig
from gateway.config.area_config import AreaConfig, ConfigError, load_config
from gateway.core.errors import GatewayError
from gateway.infra import hangup, heap
from gateway.services import health, metrics
from gateway.services.edge import Edge, Handler
from gateway.store import TrackingStore, opened_store

log = structlog.get_logger("adapters")

LEDGER_FILE = Path("state") / "adapters.db"
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0  # also: an adapter that ran this long starts again from RESTART_FIRST_S


class Inbound(Protocol):
    async def start(self) -> None:
        """Be ready to take documents (listening, folders made)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Take documents until ``stop`` is set."""

    async def close(self) -> None:
        """Let go of what ``start`` took (a listening socket, clients), however the run ended."""


def adapter_config(config: AreaConfig, agency: str) -> AdapterConfig:
    for spec in config.adapters:
        if spec.agency == agency:
            return spec
    configured = ", ".join(a.agency for a in config.adapters) or "none"
    raise ConfigError(
        f"{config.path}: adapters: no [[adapters]] table for {agency!r} (configured: {configured})"
    )


def ledger_path(config: AreaConfig) -> Path:
    return config.base_dir / LEDGER_FILE


class Reloads:
    """What SIGHUP reloads in a process of adapters: the config they start from, their edges."""

    def __init__(self, config: AreaConfig) -> None:
        self.config = config
        self._edges: set[Edge] = set()

    @contextmanager
    def running(self, edge: Edge) -> Iterator[None]:
        self._edges.add(edge)
        try:
            yield
        finally:
            self._edges.discard(edge)

    def reload(self) -> None:
        """Re-read gateway.toml into every running edge; a config that does not load changes
        nothing. An edge whose keys cannot be re-read still takes the new registry."""
        try:
            config = load_config(str(self.config.path))
        except GatewayError as exc:
            log.error("adapters.reload_refused", reason=str(exc))
            return
        self.config = config
        for edge in sorted(self._edges, key=lambda e: e.agency):
            try:
                edge.reload(config)
            except GatewayError as exc:
                log.error("adapter.keys_not_reloaded", agency=edge.agency, reason=str(exc))
                continue
            signing = sorted(edge.identity.signing.private_keys)
            log.info("adapter.reloaded", agency=edge.agency, signing_keys=signing)


@asynccontextmanager
async def _opened(config: AreaConfig, store: TrackingStore | None) -> AsyncIterator[TrackingStore]:
    if store is not None:
        yield store
        return
    async with opened_store(config.store_url) as opened:
        with health.READINESS.watching("store", health.store_writable(opened.check_writable)):
            yield opened


async def run_adapter(
    config: AreaConfig,
    spec: AdapterConfig,
    ledger: Ledger,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    store: TrackingStore | None = None,
    reloads: Reloads | None = None,
) -> None:
    """Run one adapter until ``stop`` is set; ``ready`` is set once it consumes and listens.

    ``store`` is the tracking store (the area's ``[store]`` unless given).
    With ``reloads``, the edge is made from its latest config and reloaded with it.
    """
    profile = load_profile(profile_dir(spec.profile, config.base_dir))
    async with (
        _opened(config, store) as tracking,
        _edge(config, spec.agency, tracking, reloads) as edge,
    ):
        intake = Intake(spec, profile, edge, ledger)
        inbound, outbound = _transports(spec, intake, tracking)
        try:
            await inbound.start()
            # The file drop, the webhook and MESH carry a message's files. MESH receipts a
            # message only once the agency's mailbox has downloaded it.
            takes = isinstance(outbound, FileDropOutbound | WebhookOutbound | MeshOutbound)
            await edge.consume(
                outbound, takes_attachments=takes, receipts_later=isinstance(outbound, MeshOutbound)
            )
            log.info("adapter.started", agency=spec.agency, transport=spec.transport)
            if ready is not None:
                ready.set()
            await inbound.run(stop)
        finally:
            await inbound.close()
            if isinstance(outbound, WebhookOutbound | MeshOutbound):
                await outbound.close()


@asynccontextmanager
async def _edge(
    config: AreaConfig, agency: str, store: TrackingStore, reloads: Reloads | None
) -> AsyncIterator[Edge]:
    # Made and registered in one step, so no reload can fall between the two.
    edge = Edge(reloads.config if reloads is not None else config, agency, store)
    with reloads.running(edge) if reloads is not None else contextlib.nullcontext():
        async with edge:
            yield edge


def _transports(
    spec: AdapterConfig, intake: Intake, store: TrackingStore
) -> tuple[Inbound, Handler]:
    if spec.transport == "filedrop" and spec.filedrop is not None:
        return (
            FileDropInbound(spec.filedrop, intake),
            FileDropOutbound(spec.filedrop, intake.profile, intake.ledger, spec.agency),
        )
    if spec.transport == "http" and spec.http is not None:
        return (
            HttpInbound(spec.http, intake, store),
            WebhookOutbound(spec.http, intake.profile, spec.agency),
        )
    if spec.transport == "mesh" and spec.mesh is not None:
        return (
            MeshInbound(spec.mesh, intake),
            MeshOutbound(
                spec.mesh,
                intake.profile,
                intake.ledger,
                intake.edge.config.private_keys_dir,
                spec.agency,
            ),
        )
    raise ConfigError(f"adapter {spec.agency}: transport {spec.transport!r} is not configured")


async def run_adapters(
    config: AreaConfig,
    agencies: Sequence[str],
    stop: asyncio.Event,
    reload_on_sighup: bool = False,
) -> None:
    """Run the named agencies' adapters (every configured one when none is named) until ``stop``.

    Each is supervised (see ``supervise``); a configuration error before one
    has first started stops the others and is raised. With
    ``reload_on_sighup``, SIGHUP reloads every adapter's registry and keys.
    """
    specs = [adapter_config(config, a) for a in agencies] or list(config.adapters)
    if not specs:
        raise ConfigError(f"{config.path}: adapters: no [[adapters]] table configured")
    heap.return_large_buffers()  # files of any size pass through: keep the heap flat
    reloads = Reloads(config)
    leave = hangup.on_hangup(reloads.reload) if reload_on_sighup else None
    ledger = Ledger(ledger_path(config))
    try:
        tasks = [asyncio.create_task(supervise(config, s, ledger, stop, reloads)) for s in specs]
        try:
            await asyncio.gather(*tasks)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        ledger.close()
        if leave is not None:
            leave()


async def supervise(
    config: AreaConfig,
    spec: AdapterConfig,
    ledger: Ledger,
    stop: asyncio.Event,
    reloads: Reloads | None = None,
) -> None:
    """Run one adapter until ``stop``, restarting it with backoff whenever it fails.

    A failure is the adapter's alone: it is logged and counted, and the
    adapters beside it in the process never see it. A GatewayError before the
    adapter has ever been ready is a configuration problem, raised at once.
    """
    # At 0 from the start, so the first crash is an increase an alert can see.
    metrics.ADAPTER_ERRORS.labels(agency=spec.agency, transport=spec.transport, stage="crash")
    delay, started = RESTART_FIRST_S, False
    while not stop.is_set():
        ready, began = asyncio.Event(), time.monotonic()
        try:
            await run_adapter(config, spec, ledger, stop, ready, reloads=reloads)
        except Exception as exc:
            if isinstance(exc, GatewayError) and not (started or ready.is_set()):
                raise
            failed(spec.agency, spec.transport, "crash")
            log.exception(
                "adapter.crashed", agency=spec.agency, transport=spec.transport, restart_in_s=delay
            )
        started = started or ready.is_set()
        if stop.is_set():
            return
        if time.monotonic() - began >= RESTART_MAX_S:
            delay = RESTART_FIRST_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, RESTART_MAX_S)
