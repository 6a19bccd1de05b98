"""What `mash-gateway init` creates for the intake: a dev TLS pair and the gateway keyring.

Also the secret that tags reply-token addresses, and a DKIM key pair as a
partner's mail server would hold one (the demo's stand-in for health's
server signs with it; its public half is pinned). Development material
only: a self-signed certificate (production uses a
certificate from the organisation's CA, named in ``[intake] tls_cert``).
The private key is created 0600 and the GnuPG home 0700, never chmod-ed
afterwards. The gateway's public PGP key is exported next to the keys, for
senders to encrypt to.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import gnupg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.config.intake_config import IntakeConfig
from gateway.intake.pgp import usable_home

VALIDITY = timedelta(days=365)
PUBLIC_KEY_NAME = "intake-pgp-public.asc"


def create(config: IntakeConfig, public_dir: Path, now: datetime, replace: bool) -> str:
    """Write the TLS pair and the keyring; returns the gateway's PGP fingerprint."""
    if replace:
        for old in (config.tls_cert, config.tls_key, config.reply_key):
            old.unlink(missing_ok=True)
        shutil.rmtree(config.gnupg_home, ignore_errors=True)
    write_tls_pair(config, now)
    write_reply_key(config)
    return create_keyring(config, public_dir)


def write_reply_key(config: IntakeConfig) -> None:
    """The secret that tags reply-token addresses (reply_tokens.py), 0600."""
    config.reply_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(config.reply_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))


def self_signed_pair(hostname: str, now: datetime, validity: timedelta) -> tuple[bytes, bytes]:
    """A development certificate for ``hostname``, localhost and 127.0.0.1, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), pem


def dkim_pair() -> tuple[bytes, str]:
    """A 2048-bit RSA DKIM key: the private key (PEM, as dkimpy signs with it) and the
    public key as the p= value of its DNS record (base64 SubjectPublicKeyInfo)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(public).decode("ascii")


def write_tls_pair(config: IntakeConfig, now: datetime) -> None:
    certificate, pem = self_signed_pair(config.hostname, now, VALIDITY)
    config.tls_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(config.tls_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    config.tls_cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.tls_cert.write_bytes(certificate)


def key_address(config: IntakeConfig) -> str:
    """The address on the intake's PGP key: senders may encrypt to it by this name."""
    return f"intake@{config.hostname}"


def create_keyring(config: IntakeConfig, public_dir: Path) -> str:
    """A fresh GnuPG home (0700) with the gateway key: Ed25519 signing, Curve25519 encryption."""
    fingerprint, public_key = create_home_with_key(
        config.gnupg_home, "MASH secure-mail intake", key_address(config)
    )
    public_dir.mkdir(parents=True, exist_ok=True)
    (public_dir / PUBLIC_KEY_NAME).write_text(public_key, encoding="ascii")
    return fingerprint


def create_home_with_key(home: Path, name: str, address: str) -> tuple[str, str]:
    """A fresh GnuPG home (0700) holding one new key for ``address`` (Ed25519 signing,
    Curve25519 encryption, a year's validity, no passphrase: development material);
    returns its fingerprint and armoured public key. Stops the agent the key-making
    started."""
    home.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(usable_home(home)))
    request = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        subkey_type="ECDH",
        subkey_curve="cv25519",
        name_real=name,
        name_email=address,
        expire_date="1y",
        no_protection=True,
    )
    key = gpg.gen_key(request)
    if not key.fingerprint:
        raise RuntimeError(f"gpg could not create a key for {name}: {key.stderr.strip()[-200:]}")
    public_key = str(gpg.export_keys(key.fingerprint))
    stop_agent(home)
    return str(key.fingerprint), public_key


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent a GnuPG home started, and drop the short link it was reached by.

    Key-making and the demo start agents; whoever uses the home next starts its own
    (and makes the link again), so nothing is left behind in /tmp or the process table.
    """
    reached_by = usable_home(home)
    gpgconf = shutil.which("gpgconf")
    if gpgconf is not None:
        subprocess.run(  # noqa: S603 - a fixed program, our own home, no shell
            [gpgconf, "--homedir", str(reached_by), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
            timeout=30,
        )
    if reached_by != home:
        reached_by.unlink(missing_ok=True)
