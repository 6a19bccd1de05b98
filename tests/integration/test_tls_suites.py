"""Every listener's TLS, as a scanner sees it: the suites each one negotiates, tried one by one.

Over real sockets: the context builder (gateway/infra/tls.py) behind a bare
listener, with an ECDSA and an RSA certificate (an RSA certificate is where
static-RSA key exchange and ECDHE-RSA CBC suites could creep in), and the
HTTP adapter's endpoint as it runs. The intake's STARTTLS listener is
scanned in test_intake_smtp.py, beside the running intake. Each accepts
TLS 1.3 with its AEAD suites and, on TLS 1.2, ECDHE with AES-GCM or
ChaCha20-Poly1305 only: no CBC, no static RSA, no SHA-1; TLS 1.1 and older
not at all.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters import http_tokens
from gateway.broker.vhost import BrokerAdmin
from gateway.infra import tls
from gateway.intake.devkeys import self_signed_pair
from tests.integration import tls_scan
from tests.integration.adapter_harness import add_adapter, running_adapter
from tests.integration.conftest import AMQP_URL
from tests.integration.exchange_harness import running_exchange

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_adapter(port: int, cert: Path, key: Path) -> str:
    """csc's HTTP adapter on ``port`` serving TLS with ``cert`` (its webhook is never called)."""
    return (
        '[[adapters]]\nagency = "csc"\nprofile = "csc"\nrecipients = ["hub"]\n'
        f'transport = "http"\n[adapters.http]\nlisten = "127.0.0.1:{port}"\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\nwebhook = "http://127.0.0.1:9/mash"\n'
    )


def ecdsa_certificate(folder: Path) -> tuple[Path, Path]:
    certificate, key = self_signed_pair("127.0.0.1", datetime.now(UTC), timedelta(days=1))
    cert, key_file = folder / "ec.crt", folder / "ec.key"
    cert.write_bytes(certificate)
    key_file.write_bytes(key)
    return cert, key_file


def assert_only_safe_suites(handshake: tls_scan.Handshake, port: int, good12: set[str]) -> None:
    tried = tls_scan.legacy_suites()
    assert any("CBC" in n or n.endswith(("-SHA", "-SHA256")) for n in tried)  # weak ones tried
    assert any(n.startswith("AES") for n in tried)  # static-RSA key exchange tried
    accepted = tls_scan.accepted_tls12(handshake)
    assert accepted == good12, sorted(accepted)
    assert not [n for n in accepted if tls_scan.unsafe(n)]
    assert tls_scan.accepted_tls13(port, starttls=False) == tls_scan.GOOD_TLS13
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert not tls_scan.accepts_version(handshake, old), old


@pytest.fixture
def certificates(tmp_path: Path) -> Iterator[dict[str, tuple[Path, Path]]]:
    yield {"ecdsa": ecdsa_certificate(tmp_path), "rsa": tls_scan.rsa_certificate(tmp_path)}


@pytest.mark.parametrize(
    ("kind", "good12"),
    [("ecdsa", tls_scan.GOOD_TLS12_ECDSA), ("rsa", tls_scan.GOOD_TLS12_RSA)],
)
def test_the_context_builder_offers_only_ecdhe_with_aead_and_tls13(
    certificates: dict[str, tuple[Path, Path]], kind: str, good12: set[str]
) -> None:
    cert, key = certificates[kind]
    with tls_scan.tls_listener(tls.server_context(cert, key)) as port:
        assert_only_safe_suites(tls_scan.direct_tls(port), port, good12)


async def test_the_http_adapter_offers_only_ecdhe_with_aead_and_tls13(
    broker_admin: BrokerAdmin, tmp_path: Path
) -> None:
    cert, key = tls_scan.rsa_certificate(tmp_path)
    port = free_port()
    toml = http_adapter(port, cert, key)
    async with running_exchange(broker_admin, AMQP_URL, tmp_path) as exchange:
        config = add_adapter(exchange, toml)
        http_tokens.issue(config.private_keys_dir, "csc")
        async with running_adapter(config, "csc", tmp_path / "ledger.db"):
            handshake = tls_scan.direct_tls(port)
            await asyncio.to_thread(
                assert_only_safe_suites, handshake, port, tls_scan.GOOD_TLS12_RSA
            )
