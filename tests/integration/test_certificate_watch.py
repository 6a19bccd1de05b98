"""Certificate-expiry gauges follow the files: re-read on SIGHUP (and hourly), every use named."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.config.certificates import adapter_certificates, intake_certificates
from gateway.services import certificate_watch, metrics
from tests.integration.exchange_harness import eventually

pytestmark = pytest.mark.integration


def pem(days: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mash.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def gauge(use: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "mash_gateway_certificate_expiry_seconds", {"use": use}
    )


async def test_a_renewed_certificate_moves_its_gauge_on_sighup(tmp_path: Path) -> None:
    served, bundle = tmp_path / "server.pem", tmp_path / "ca-bundle.pem"
    served.write_bytes(pem(10))
    bundle.write_bytes(pem(400) + pem(5))  # a bundle counts its earliest expiry
    watched = {"http-tls-test": served, "mesh-ca-test": bundle}
    async with certificate_watch.watching(watched):
        before = gauge("http-tls-test")
        assert before is not None and 9 * 86400 < before <= 10 * 86400
        ca = gauge("mesh-ca-test")
        assert ca is not None and ca <= 5 * 86400
        served.write_bytes(pem(90))  # renewed in place
        os.kill(os.getpid(), signal.SIGHUP)

        async def renewed() -> bool:
            seen = gauge("http-tls-test")
            return seen is not None and seen > 89 * 86400

        await eventually(renewed)
        served.write_text("not a certificate")
        os.kill(os.getpid(), signal.SIGHUP)

        async def dropped() -> bool:
            return gauge("http-tls-test") is None

        await eventually(dropped)
    await asyncio.sleep(0)


def test_every_certificate_a_service_uses_is_watched(tmp_path: Path) -> None:
    area = tmp_path / "area"
    assert main(["init", str(area)]) == 0
    config = load_config(str(area / "gateway.toml"))
    assert "smtp-tls" in intake_certificates(config)
    assert any(use.startswith("client-ca-") for use in intake_certificates(config)) is (
        any(rule.client_ca is not None for rule in config.intake.domains)  # type: ignore[union-attr]
    )
    uses = adapter_certificates(config, [])
    http = [a.agency for a in config.adapters if a.http and a.http.tls_cert]
    assert {f"http-tls-{agency}" for agency in http} <= set(uses)
