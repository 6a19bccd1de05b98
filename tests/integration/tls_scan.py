"""List the TLS suites a listener negotiates, by handshaking with each one in turn.

TLS 1.2 and older: the ssl module, a client restricted to one suite (and one
protocol version) per handshake, over a real socket; every suite this
OpenSSL knows is tried, weak ones included (security level 0 on the
client, so the client is never what refuses). TLS 1.3: Python's ssl cannot
restrict TLS 1.3 suites, so ``openssl s_client -ciphersuites`` does it.
``handshake`` opens a connection and runs the TLS handshake over it (after
STARTTLS for SMTP), raising ssl.SSLError or OSError when the server refuses.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

Handshake = Callable[[ssl.SSLContext], None]

TLS13_SUITES = (
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
# What a safe listener offers: TLS 1.3's AEAD suites, and on TLS 1.2 ECDHE with AEAD.
GOOD_TLS13 = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}
GOOD_TLS12_ECDSA = {
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
}
GOOD_TLS12_RSA = {
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
}


def legacy_suites() -> list[str]:
    """Every suite for TLS 1.2 and below that this OpenSSL can offer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]


def one_suite(name: str, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    context.set_ciphers(f"{name}:@SECLEVEL=0")
    return context


def accepted_tls12(handshake: Handshake) -> set[str]:
    """The TLS 1.2 suites the server completes a handshake with."""
    accepted = set()
    for name in legacy_suites():
        try:
            handshake(one_suite(name))
        except (ssl.SSLError, OSError, smtplib.SMTPException):
            continue
        accepted.add(name)
    return accepted


def accepts_version(handshake: Handshake, version: ssl.TLSVersion) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")
    try:
        handshake(context)
    except (ssl.SSLError, OSError, smtplib.SMTPException):
        return False
    return True


def accepted_tls13(port: int, starttls: bool) -> set[str]:
    """The TLS 1.3 suites the server at 127.0.0.1:``port`` completes a handshake with."""
    accepted = set()
    for suite in TLS13_SUITES:
        command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3"]
        command += ["-ciphersuites", suite, "-brief"]
        if starttls:
            command += ["-starttls", "smtp", "-name", "scan.example"]
        done = subprocess.run(command, input=b"", capture_output=True, timeout=30, check=False)
        output = done.stdout.decode() + done.stderr.decode()
        if done.returncode == 0 and f"Ciphersuite: {suite}" in output:
            accepted.add(suite)
    return accepted


def smtp_starttls(port: int) -> Handshake:
    def handshake(context: ssl.SSLContext) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.starttls(context=context)

    return handshake


def direct_tls(port: int) -> Handshake:
    def handshake(context: ssl.SSLContext) -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass

    return handshake


def unsafe(name: str) -> bool:
    """A TLS 1.2 suite no listener of ours may accept: not ECDHE, not AEAD, or a SHA-1 MAC."""
    return (
        not name.startswith("ECDHE-")
        or not ("GCM" in name or "CHACHA20" in name)
        or name.endswith("-SHA")
        or "CBC" in name
    )


@contextmanager
def tls_listener(context: ssl.SSLContext) -> Iterator[int]:
    """A bare TLS listener on 127.0.0.1 that completes handshakes with ``context``; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(10)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)  # until the client closes
            except (ssl.SSLError, OSError):
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def rsa_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate for 127.0.0.1 and its key: a listener's pair on which
    static-RSA key exchange would be possible, were it offered."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / "rsa.crt", folder / "rsa.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file
