"""TLS to the broker: a real TLS listener on the local RabbitMQ, a real exchange over amqps://.

The listeners are started at run time on free ports (``rabbitmqctl eval``
``rabbit_networking:start_ssl_listener``), with a CA and server certificate
made for the run, and stopped afterwards, so the node's plain listener and
everyone else's tests are untouched. One listener asks for no client
certificate; the other requires one that chains to the run's CA.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.broker.connection import BrokerUnavailable, connect
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.config.broker_config import BrokerTls
from gateway.core.resources import schemas_dir
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.router import run_router
from gateway.store.sqlite import SqliteStore

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"),
]

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path  # a CA that signed nothing the broker shows


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    names: list[x509.GeneralName],
) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    # The broker runs as its own user, so the folder is one it may enter.
    folder = Path(tempfile.mkdtemp(prefix="mash-broker-tls-"))
    folder.chmod(0o755)
    ca_key, client_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("MASH test broker CA", ca_key, None, [])
    issuer = (ca.subject, ca_key)
    server = _certificate(
        "localhost",
        server_key,
        issuer,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _certificate("mash police edge", client_key, issuer, [])
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate("Someone else's CA", stranger_key, None, [])
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "server.crt": server.public_bytes(serialization.Encoding.PEM),
        "server.key": _key_pem(server_key),
        "client.crt": client.public_bytes(serialization.Encoding.PEM),
        "client.key": _key_pem(client_key),
        "stranger-ca.crt": stranger.public_bytes(serialization.Encoding.PEM),
    }
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        path.chmod(0o600 if name.endswith(".key") else 0o644)
    shutil.chown(folder / "server.key", user="rabbitmq")  # the broker's own key, for it only
    yield Pki(
        folder,
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
        folder / "stranger-ca.crt",
    )
    shutil.rmtree(folder)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rabbitmqctl_eval(expression: str) -> None:
    subprocess.run(["rabbitmqctl", "eval", expression], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_listeners(pki: Pki) -> Iterator[tuple[int, int]]:
    """(port without client certificates, port that requires one)."""
    open_port, mutual_port = _free_port(), _free_port()
    common = (
        f'{{certfile,"{pki.server_cert}"}},{{keyfile,"{pki.server_key}"}},'
        f"{{cacertfile,\"{pki.ca}\"}},{{versions,['tlsv1.3','tlsv1.2']}}"
    )
    _rabbitmqctl_eval(f"rabbit_networking:start_ssl_listener({open_port}, [{common}], 1, 1).")
    mutual = f"{common},{{verify,verify_peer}},{{fail_if_no_peer_cert,true}}"
    _rabbitmqctl_eval(f"rabbit_networking:start_ssl_listener({mutual_port}, [{mutual}], 1, 1).")
    try:
        yield open_port, mutual_port
    finally:
        for port in (open_port, mutual_port):
            _rabbitmqctl_eval(f"rabbit_networking:stop_tcp_listener({port}).")


def amqps_area(directory: Path, port: int, vhost: str, broker_lines: str) -> AreaConfig:
    url = f"amqps://guest:guest@localhost:{port}/{vhost}"
    assert main(["init", str(directory), "--broker-url", url]) == 0
    toml = directory / "gateway.toml"
    text = toml.read_text()
    toml.write_text(text.replace(f'url = "{url}"\n', f'url = "{url}"\n{broker_lines}', 1))
    return load_config(str(toml))


def tls_connections(vhost: str) -> list[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "vhost", "ssl"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t")[1] for line in listed.splitlines() if line.startswith(f"{vhost}\t")]


async def test_the_router_and_edges_exchange_over_amqps_with_a_client_certificate(
    pki: Pki, tls_listeners: tuple[int, int], vhost: str, tmp_path: Path
) -> None:
    _, mutual_port = tls_listeners
    area = amqps_area(
        tmp_path / "area",
        mutual_port,
        vhost,
        f'ca = "{pki.ca}"\ncert = "{pki.client_cert}"\nkey = "{pki.client_key}"\n',
    )
    store = SqliteStore(str(tmp_path / "router.db"))
    await store.open()
    stop, ready = asyncio.Event(), asyncio.Event()
    router = asyncio.create_task(run_router(area, store, stop, ready))
    received: list[Delivered] = []

    async def police_system(delivered: Delivered) -> None:
        received.append(delivered)

    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with Edge(area, "hub", store) as hub, Edge(area, "police", store) as police:
            await police.consume(police_system)
            await hub.submit(Submission(REQUEST, ("police",)))
            for _ in range(150):
                if received:
                    break
                await asyncio.sleep(0.1)
            ssl_flags = await asyncio.to_thread(tls_connections, vhost)
    finally:
        stop.set()
        await router
        await store.close()
    assert [d.header.fields.message_type for d in received] == ["InformationRequest"]
    assert ssl_flags and set(ssl_flags) == {"true"}  # router, hub and police: all over TLS


async def test_a_broker_certificate_from_another_ca_is_refused_by_name(
    pki: Pki, tls_listeners: tuple[int, int]
) -> None:
    open_port, _ = tls_listeners
    url = f"amqps://guest:guest@localhost:{open_port}/"
    with pytest.raises(BrokerUnavailable, match="certificate we do not trust"):
        await connect(url, BrokerTls(ca=pki.stranger_ca))


async def test_a_host_name_the_certificate_does_not_carry_is_refused(
    pki: Pki, tls_listeners: tuple[int, int]
) -> None:
    open_port, _ = tls_listeners
    url = f"amqps://guest:guest@127.0.0.2:{open_port}/"  # loopback, but not in the certificate
    with pytest.raises(BrokerUnavailable, match=r"certificate we do not trust: .*mismatch"):
        await connect(url, BrokerTls(ca=pki.ca))


async def test_the_mutual_listener_refuses_an_edge_without_a_client_certificate(
    pki: Pki, tls_listeners: tuple[int, int]
) -> None:
    _, mutual_port = tls_listeners
    url = f"amqps://guest:guest@localhost:{mutual_port}/"
    with pytest.raises(BrokerUnavailable):
        await connect(url, BrokerTls(ca=pki.ca))
    connection = await connect(url, BrokerTls(pki.ca, pki.client_cert, pki.client_key))
    assert urlsplit(url).scheme == "amqps" and not connection.is_closed
    await connection.close()
