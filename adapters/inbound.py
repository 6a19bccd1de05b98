"""The inbound half every transport shares: native bytes in, sealed messages out, once per key.

A transport hands over the bytes it received and a key that identifies the
input (a file's digest, an HTTP Idempotency-Key). The intake maps and checks
them (adapters.prepare), then submits each document through the edge and
records its message id in the ledger as soon as the broker has confirmed
it, so a repeat of the key sends nothing new and a restart resumes where a
crash stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import structlog

from adapters.ledger import Ledger, Sent
from adapters.mapping import Mapping
from adapters.prepare import Prepared, Refused, prepare
from adapters.profile import Profile
from gateway.config.adapter_config import AdapterConfig
from gateway.core.attachments import AttachmentRefused
from gateway.core.errors import GatewayError
from gateway.infra.clock import utc_now
from gateway.services import metrics
from gateway.services.edge import Edge, Submission
from gateway.services.transfer_sender import AttachmentFile

log = structlog.get_logger("adapters")


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def failed(agency: str, transport: str, stage: str) -> None:
    """The one place an adapter failure is counted (labels: bounded ids and stage names only)."""
    metrics.ADAPTER_ERRORS.labels(agency=agency, transport=transport, stage=stage).inc()
    log.warning("adapter.failed", agency=agency, transport=transport, stage=stage)


@dataclass(frozen=True)
class Reply:
    """How an inbound document relates to earlier messages, when the transport knows."""

    correlation_id: str | None = None
    in_reply_to: str | None = None


class Intake:
    def __init__(self, spec: AdapterConfig, profile: Profile, edge: Edge, ledger: Ledger) -> None:
        self.spec = spec
        self.profile = profile
        self.edge = edge
        self.ledger = ledger

    @property
    def agency(self) -> str:
        return self.spec.agency

    def prepare(self, data: bytes, source: str, mapping: Mapping | None = None) -> list[Prepared]:
        """Map (by default with the profile's inbound mapping) and check; raises Refused."""
        return prepare(
            self.profile.inbound if mapping is None else mapping,
            data,
            source,
            self.agency,
            self.spec.recipients,
            self.edge.registry,
        )

    async def sent(self, key: str) -> Sent | None:
        return await asyncio.to_thread(self.ledger.sent, self.agency, key)

    async def send(
        self,
        documents: list[Prepared],
        key: str,
        digest: str,
        source: str,
        reply: Reply,
        attachments: tuple[AttachmentFile, ...] = (),
    ) -> tuple[str, ...]:
        """Submit the documents not yet recorded under ``key``; every message id, in order.

        ``attachments`` travel with the document, which must then be the only one.
        """
        if attachments and len(documents) != 1:
            raise Refused(
                "attachment",
                f"{source}: maps to {len(documents)} messages; files go with one document only",
                "attachment",
            )
        done = await self.sent(key)
        ids = list(done.message_ids) if done else []
        for index in range(len(ids), len(documents)):
            prepared = documents[index]
            try:
                fields = await self.edge.submit(
                    Submission(
                        prepared.document,
                        self.spec.recipients,
                        correlation_id=reply.correlation_id,
                        in_reply_to=reply.in_reply_to,
                        source=prepared.source,
                        attachments=attachments,
                    )
                )
            except AttachmentRefused as exc:  # a file changed, a limit, a name
                raise Refused(exc.check, str(exc), exc.check) from None
            except GatewayError as exc:  # e.g. a header fact the payload contradicts
                raise Refused("seal", str(exc), type(exc).__name__) from None
            await asyncio.to_thread(
                self.ledger.record,
                self.agency,
                key,
                index,
                digest,
                source,
                fields.message_id,
                utc_now(),
            )
            ids.append(fields.message_id)
        return tuple(ids)
