"""Follow the signed area directory on the broker; apply each newer version without a restart.

Every router and edge reads the stream ``gateway.directory`` from its start
(a stream keeps each version for every reader). Each version is judged by
core/area_directory.py against the directory this service holds; one that
passes is laid over the host's own config (config/toml_tables.py), parsed
by the one config parser, kept in ``state/directory.signed`` (so a restart
starts from it, and refuses anything older), and handed to ``apply``: the
router's and escalator's or the edge's reload, the same as SIGHUP's. A
revoked key therefore stops verifying at the router and signing at the edge
within the stream's delivery time, and a new agency is known at once.

Refused: a version not newer than the one held (an older one is how a
revoked key would come back; every genuine old version is also seen once at
start, so this is counted, logged at debug, not warned), a document for
another area, one not signed by a gateway key of the held registry, a
tampered one, and one whose tables do not make a valid config. Each is
counted in ``mash_gateway_directory_refused_total`` by reason; all but
not-newer are logged as warnings; the directory in force stays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from gateway.broker import topology
from gateway.broker.connection import connect
from gateway.config.area_config import AreaConfig, ConfigError, directory_path, parse_config
from gateway.config.broker_config import BrokerTls
from gateway.config.toml_tables import with_directory
from gateway.core import area_directory
from gateway.core.area_directory import DirectoryRefused, Refusal
from gateway.infra.atomic import atomic_writer
from gateway.services import metrics

log = structlog.get_logger("gateway.services.directory_watch")

Apply = Callable[[AreaConfig], Awaitable[None]]


class DirectoryWatch:
    """Holds the config in force and moves it forward, one verified version at a time."""

    def __init__(self, config: AreaConfig, apply: Apply) -> None:
        self.config = config
        self._apply = apply
        metrics.DIRECTORY_VERSION.set(config.directory_version)

    async def start(self, url: str, tls: BrokerTls | None) -> AbstractRobustConnection:
        """Consume the stream from its first version on a connection of its own; the caller
        closes the connection returned. The robust channel resumes the stream.

        Not on the service's connection: while a cluster node is down, RabbitMQ
        may refuse the stream's consumer by closing the whole connection
        (INTERNAL_ERROR from the stream coordinator, RESOURCE_ERROR without a
        local replica), and every reconnect restores the consumer again. On a
        router's connection that took its consumer and its in-flight messages
        down with it, again and again (tests/fault/test_cluster.py).
        """
        connection = await connect(url, tls)
        # Held here: a robust connection keeps its channels only weakly, and a channel
        # nobody holds is collected and never restored after a reconnect.
        self._channel = channel = await connection.channel()
        await channel.set_qos(prefetch_count=16)  # a stream consumer must bound its unacked
        try:
            queue = await channel.declare_queue(topology.DIRECTORY_QUEUE, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            log.warning(
                "directory.no_stream",
                reason=f"no {topology.DIRECTORY_QUEUE} stream on this vhost: rerun "
                "`mash-gateway broker setup`; until then the config file is in force",
            )
            return connection
        await queue.consume(self._on_message, arguments={"x-stream-offset": "first"})
        return connection

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        signature = (message.headers or {}).get(topology.DIRECTORY_SIGNATURE_HEADER, b"")
        if isinstance(signature, str):
            signature = signature.encode()
        await self.offer(message.body, signature if isinstance(signature, bytes) else b"")
        await message.ack()

    async def offer(self, document: bytes, signature: bytes) -> bool:
        """Judge one published version; apply it if it passes. True when applied."""
        config = self.config
        try:
            directory = area_directory.accept(
                document,
                signature,
                area=config.area_id,
                held_version=config.directory_version,
                gateway_key=config.gateway_key,
            )
            local = config.path.read_text(encoding="utf-8")
            try:
                candidate = parse_config(with_directory(local, directory.tables), config.path)
            except ConfigError as exc:
                raise DirectoryRefused(Refusal.INVALID, f"directory tables: {exc}") from None
        except DirectoryRefused as exc:
            metrics.DIRECTORY_REFUSED.labels(reason=exc.refusal.value).inc()
            report = log.debug if exc.refusal is Refusal.NOT_NEWER else log.warning
            report("directory.refused", check=exc.refusal.value, reason=str(exc))
            return False
        candidate = replace(candidate, directory_version=directory.version)
        with atomic_writer(directory_path(config)) as out:
            out.write(area_directory.stored(document, signature))
        self.config = candidate
        await self._apply(candidate)
        metrics.DIRECTORY_VERSION.set(directory.version)
        log.info(
            "directory.applied",
            version=directory.version,
            agencies=len(candidate.registry.agencies),
            keys=len(candidate.registry.keys),
            agreements=len(candidate.agreements),
        )
        return True
