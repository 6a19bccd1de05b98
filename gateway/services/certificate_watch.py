"""Keeps the certificate-expiry gauges true for a long-running service.

The gauge was set once at start-up, so a service running for months never
saw its certificate approach expiry. Here each certificate file a service
uses is re-read every ``interval_s`` (an hour) and on SIGHUP, so a renewed
certificate replaced at the same path moves the gauge back up, and the
``MashCertificateExpiringSoon`` alert fires for one that is not. A file
holding a chain or a CA bundle counts its earliest expiry. A file that
cannot be read or parsed is logged and its series removed (the alert on a
missing series is ``absent``-based in Prometheus, not ours to guess).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import structlog
from cryptography import x509

from gateway.infra import hangup
from gateway.infra.clock import utc_now
from gateway.services import metrics

log = structlog.get_logger("gateway.services.certificate_watch")

DEFAULT_INTERVAL_S = 3600.0


def refresh(certificates: Mapping[str, Path]) -> None:
    """Read every file and set its gauge to the seconds left on its earliest certificate."""
    now = utc_now()
    for use, path in sorted(certificates.items()):
        try:
            found = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            log.error("certificate.unreadable", use=use, path=str(path), reason=str(exc))
            with suppress(KeyError):
                metrics.CERTIFICATE_EXPIRY.remove(use)
            continue
        expiry = min(c.not_valid_after_utc for c in found)
        metrics.CERTIFICATE_EXPIRY.labels(use=use).set((expiry - now).total_seconds())


@asynccontextmanager
async def watching(
    certificates: Mapping[str, Path], interval_s: float = DEFAULT_INTERVAL_S
) -> AsyncIterator[None]:
    """Refresh now, then every ``interval_s`` and on SIGHUP, for the life of the block."""
    refresh(certificates)
    if not certificates:
        yield
        return

    async def every_interval() -> None:
        while True:
            await asyncio.sleep(interval_s)
            refresh(certificates)

    task = asyncio.create_task(every_interval())
    unsubscribe = hangup.on_hangup(lambda: refresh(certificates))
    try:
        yield
    finally:
        unsubscribe()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
