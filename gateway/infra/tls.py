"""The one place TLS contexts are built: every listener and every client of ours uses these.

TLS 1.3, and TLS 1.2 with only ECDHE key exchange and AEAD ciphers (AES-GCM,
ChaCha20-Poly1305): forward secrecy always, and none of the CBC suites whose
MAC-then-encrypt padding checks leak timing (Lucky Thirteen), nor static RSA
key exchange (no forward secrecy; ROBOT), nor SHA-1 MACs. That is Mozilla's
"intermediate" profile less its finite-field DHE suites, which every client
that speaks TLS 1.2 with ECDHE can do without. TLS 1.3's suites are all AEAD,
and OpenSSL's defaults (AES-GCM, ChaCha20) are kept; the short-tag CCM_8
suite is never enabled.

Compression (CRIME) and renegotiation are off; the server picks the suite.
``tests/integration/test_tls_suites.py`` lists what a listener negotiates by
handshaking with each suite in turn.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

# TLS 1.2 suites, strongest first; the server's order wins.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    )
)

_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION


def _restrict(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= _OPTIONS
    return context


def server_context(
    cert: Path, key: Path, client_cas: Iterable[Path] | None = None
) -> ssl.SSLContext:
    """A listener's context for the certificate ``cert`` and its key ``key``.

    With ``client_cas`` (even none) the handshake asks the client for a
    certificate, optionally: a client without one still connects, and one
    with a certificate that chains to those CAs or to the system's public
    CAs is let in. Which certificate may do what is the caller's decision
    (the intake pins fingerprints). With None no certificate is asked for.
    """
    context = _restrict(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(str(cert), str(key))
    if client_cas is not None:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        for ca in client_cas:
            context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_context(cafile: Path | None = None) -> ssl.SSLContext:
    """A client's context that verifies the server's certificate and name against ``cafile``
    (the system's CAs when None), under the same version and suite rules as our listeners."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
    return _restrict(context)
