"""The real intake on a real exchange, and senders with real gpg keys, for the intake tests.

Key generation is the slow part, so the senders' keys are made once per
session (``people``). Each test gets a fresh area (and so a fresh gateway
PGP key); the pinned and unpinned public keys are imported into it. GnuPG
homes live in short /tmp directories: gpg-agent's socket path must stay
under 108 characters, which pytest's tmp paths do not.

The `tls` domains' mail servers are played here too: health's and
probation's sign each mail with DKIM (``mail`` does it, as their outgoing
server would); health's key is pinned in the config, probation's is
"published in DNS", which here is the lookup function handed to dkimpy's
DNS hook. Housing's server presents a client certificate from its own CA
(``partner_tls``), pinned by fingerprint.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import shutil
import smtplib
import sqlite3
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import dkim
import gnupg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.cli import main as cli_main
from gateway.config.area_config import load_config
from gateway.config.intake_config import (
    Authentication,
    DkimKey,
    DomainRule,
    Policy,
    Relay,
    Staff,
)
from gateway.demo.mail import multipart_signed, send_over_starttls
from gateway.intake import devkeys
from gateway.intake.service import RunningIntake, running_intake
from gateway.store.sqlite import SqliteStore
from tests.integration.exchange_harness import Exchange

HOST = "intake.demo.example"
HUB = f"hub@{HOST}"
EDUCATION = f"education@{HOST}"  # a mailbox no sharing agreement lets the senders reach
PGP_DOMAIN = "police.demo.example"
TLS_DOMAIN = "health.demo.example"
OFFICER = f"pc.smith@{PGP_DOMAIN}"
COLLEAGUE = f"ds.jones@{PGP_DOMAIN}"
NURSE = f"nurse@{TLS_DOMAIN}"
MAIL_ONLY_DOMAIN = "probation.demo.example"  # an e-mail-only agency: the intake takes its inbox
PROBATION_OFFICER = f"po@{MAIL_ONLY_DOMAIN}"
PGP_MAIL_ONLY_DOMAIN = "csc.demo.example"  # e-mail-only too, on PGP
SOCIAL_WORKER = f"sw@{PGP_MAIL_ONLY_DOMAIN}"
CERT_DOMAIN = "housing.demo.example"  # authenticated by its mail server's client certificate
HOUSING_OFFICER = f"officer@{CERT_DOMAIN}"
PAST = ("--faked-system-time", "20200101T000000")
SELECTOR = "mash"


@dataclass(frozen=True)
class DkimSigner:
    """A `tls` partner's outgoing mail server: signs as its domain with its DKIM key."""

    domain: str
    private_key: bytes  # PEM
    public_key: str  # the p= value of its DNS record

    @classmethod
    def made(cls, domain: str) -> DkimSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(domain, pem, base64.b64encode(der).decode())

    def sign(self, data: bytes, domain: str | None = None) -> bytes:
        """``data`` with a DKIM-Signature by ``domain`` (its own by default) on top."""
        header = dkim.sign(
            data, SELECTOR.encode(), (domain or self.domain).encode(), self.private_key
        )
        return bytes(header) + data


HEALTH_SERVER = DkimSigner.made(TLS_DOMAIN)  # its key pinned in the config
PROBATION_SERVER = DkimSigner.made(MAIL_ONLY_DOMAIN)  # its key "in DNS"
DKIM_SIGNERS = {TLS_DOMAIN: HEALTH_SERVER, MAIL_ONLY_DOMAIN: PROBATION_SERVER}


def dns(name: bytes, timeout: int = 5) -> bytes | None:
    """The DNS the intake reads unpinned DKIM keys from: probation's record only."""
    if name == f"{SELECTOR}._domainkey.{MAIL_ONLY_DOMAIN}.".encode():
        return f"v=DKIM1; k=rsa; p={PROBATION_SERVER.public_key}".encode()
    return None


@dataclass(frozen=True)
class Person:
    address: str
    fingerprint: str


@dataclass(frozen=True)
class People:
    """Senders' keys in one GnuPG home (the senders' side of the wire)."""

    home: Path
    officer: Person  # pinned to police
    colleague: Person  # pinned to police too (a second staff member)
    stranger: Person  # valid key, in the gateway keyring, pinned to nobody
    expired: Person  # pinned, but expired
    revoked: Person  # pinned, but revoked
    unknown: Person  # pinned, never given to the gateway
    social_worker: Person  # pinned to csc, an e-mail-only agency on PGP
    veteran: Person  # pinned, made 60 days ago; signs as of 30 days ago

    @property
    def gpg(self) -> gnupg.GPG:
        return gnupg.GPG(gnupghome=str(self.home))

    def signing_gpg(self, signer: Person) -> gnupg.GPG:
        """gpg signs with an expired key only on a clock from when it was valid; the
        veteran's signatures are a month old."""
        if signer == self.expired:
            return gnupg.GPG(gnupghome=str(self.home), options=list(PAST))
        if signer == self.veteran:
            return gnupg.GPG(gnupghome=str(self.home), options=days_ago(30))
        return self.gpg

    def pinned(self) -> tuple[Staff, ...]:
        return tuple(
            Staff(p.address, p.fingerprint)
            for p in (
                self.officer,
                self.colleague,
                self.expired,
                self.revoked,
                self.unknown,
                self.veteran,
            )
        )

    def known_to_gateway(self) -> tuple[Person, ...]:
        return (
            self.officer,
            self.colleague,
            self.stranger,
            self.expired,
            self.revoked,
            self.social_worker,
            self.veteran,
        )


def days_ago(days: int) -> list[str]:
    """gpg's options for a clock ``days`` in the past."""
    then = datetime.now(UTC) - timedelta(days=days)
    return ["--faked-system-time", then.strftime("%Y%m%dT%H%M%S")]


def short_home(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def drop_home(home: Path) -> None:
    """Stop the gpg-agent this home started (ours, by its home), then remove it."""
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True
    )
    shutil.rmtree(home, ignore_errors=True)


def _new_key(gpg: gnupg.GPG, address: str, expire: str = "1y") -> Person:
    request = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        subkey_type="ECDH",
        subkey_curve="cv25519",
        name_real=address.split("@")[0],
        name_email=address,
        expire_date=expire,
        no_protection=True,
    )
    key = gpg.gen_key(request)
    assert key.fingerprint, key.stderr
    return Person(address, str(key.fingerprint))


@contextmanager
def made_people() -> Iterator[People]:
    home = short_home("gpgp")
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        officer = _new_key(gpg, OFFICER)
        colleague = _new_key(gpg, COLLEAGUE)
        stranger = _new_key(gpg, f"stranger@{PGP_DOMAIN}")
        unknown = _new_key(gpg, f"unknown@{PGP_DOMAIN}")
        revoked = _new_key(gpg, f"revoked@{PGP_DOMAIN}")
        # An expired key: made "in 2020" with one day of validity.
        past = gnupg.GPG(gnupghome=str(home), options=list(PAST))
        expired = _new_key(past, f"expired@{PGP_DOMAIN}", expire="1d")
        social_worker = _new_key(gpg, SOCIAL_WORKER)
        early = gnupg.GPG(gnupghome=str(home), options=days_ago(60))
        veteran = _new_key(early, f"veteran@{PGP_DOMAIN}")
        yield People(
            home, officer, colleague, stranger, expired, revoked, unknown, social_worker, veteran
        )
    finally:
        drop_home(home)


def revocation_certificate(people: People) -> str:
    """gpg writes one for every new key; the leading ':' guards it against accidental import."""
    path = people.home / "openpgp-revocs.d" / f"{people.revoked.fingerprint}.rev"
    return path.read_text().replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK"
    )


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def content_with_xml(xml: bytes, note: str = "Referral attached.") -> bytes:
    """The entity a sender signs: a short note and the canonical XML as an attachment."""
    message = EmailMessage(policy=SMTP)
    message.set_content(note)
    message.add_attachment(xml, maintype="application", subtype="xml", filename="referral.xml")
    return message.as_bytes()


def signed(content: bytes, people: People, signer: Person) -> bytes:
    """RFC 3156 multipart/signed over exactly ``content``."""
    signature = people.signing_gpg(signer).sign(
        content, keyid=signer.fingerprint, detach=True, binary=False
    )
    assert signature.data, signature.stderr
    return multipart_signed(content, bytes(signature.data))


def encrypted(entity: bytes, people: People, gateway_fingerprint: str) -> bytes:
    """RFC 3156 multipart/encrypted of ``entity`` to the gateway's key."""
    result = people.gpg.encrypt(entity, [gateway_fingerprint], always_trust=True, armor=True)
    assert result.ok, result.stderr
    boundary = f"enc-{uuid.uuid4().hex}"
    return (
        (
            f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            f' boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
            "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            f"\r\n--{boundary}\r\n"
            'Content-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
        ).encode()
        + crlf(bytes(result.data))
        + f"\r\n--{boundary}--\r\n".encode()
    )


def mail(
    from_address: str,
    entity: bytes,
    to: str = HUB,
    subject: str = "Referral",
    dkim_signed: bool = True,
) -> bytes:
    """Outer headers, then the entity (whose own headers continue the header block); for a
    DKIM-signing partner, signed as its mail server would (unless ``dkim_signed`` is False)."""
    domain = from_address.split("@")[1]
    data = (
        f"From: {from_address}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{domain}>\r\nMIME-Version: 1.0\r\n"
    ).encode() + entity
    signer = DKIM_SIGNERS.get(domain)
    return signer.sign(data) if signer is not None and dkim_signed else data


@functools.cache
def client_tls() -> ssl.SSLContext:
    """The tests trust the intake's self-signed development certificate by not verifying it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send(
    port: int, mail_from: str, rcpt: str, data: bytes, tls: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """One transaction over STARTTLS; the reply to the last command that was refused, or to DATA."""
    return send_over_starttls(port, tls or client_tls(), mail_from, rcpt, data)


@dataclass(frozen=True)
class PartnerPki:
    """Housing's mail server certificates: its CA, the pinned one, and another by that CA."""

    ca: Path
    pinned: tuple[Path, Path]  # certificate, key
    other: tuple[Path, Path]

    def tls(self, which: str = "pinned") -> ssl.SSLContext:
        """A sending MTA's client context that presents ``which`` certificate."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        cert, key = self.pinned if which == "pinned" else self.other
        context.load_cert_chain(str(cert), str(key))
        return context

    def fingerprint(self, which: str = "pinned") -> str:
        cert = self.pinned[0] if which == "pinned" else self.other[0]
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        return hashlib.sha256(der).hexdigest().upper()


def _pem_pair(
    folder: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


def housing_pki(exchange: Exchange) -> PartnerPki:
    """Housing's certificates on this exchange's area (made once, by the first caller)."""
    return partner_pki(exchange.tmp / "housing-pki")


@functools.cache
def partner_pki(folder: Path) -> PartnerPki:
    """A CA and two server certificates it signed, as a partner's PKI would issue them."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Housing mail CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, _ = _pem_pair(folder, "ca", ca, ca_key)

    def server(name: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256())
        )
        return _pem_pair(folder, name, certificate, key)

    return PartnerPki(
        ca_file, server("mx1.housing.demo.example"), server("rogue.housing.demo.example")
    )


def send_raw_data(port: int, mail_from: str, rcpt: str, data: bytes) -> tuple[int, str]:
    """DATA bytes exactly as given (no dot-stuffing, no line-ending repair): smuggling payloads."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        assert client.mail(mail_from)[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        client.putcmd("data")
        code, _ = client.getreply()
        assert code == 354
        client.send(data + b"\r\n.\r\n")
        code, reply = client.getreply()
        return code, reply.decode()


def router_message_count(exchange: Exchange) -> int:
    with sqlite3.connect(exchange.tmp / "router.db") as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


# The agencies whose mail ``intake_on`` takes: init made the intake keys for the demo's
# three (police, health, housing); the others get theirs as an operator would add them.
INTAKE_AGENCIES = ("police", "health", "probation", "housing", "csc")


def add_intake_keys(config_path: Path) -> bool:
    """``keys generate --agency A --intake`` for each of INTAKE_AGENCIES without an intake key;
    True when any was added."""
    registry = load_config(str(config_path)).registry
    missing = [
        agency for agency in INTAKE_AGENCIES if not any(k.intake for k in registry.keys_of(agency))
    ]
    for agency in missing:
        command = ["--config", str(config_path), "keys", "generate", "--agency", agency]
        assert cli_main([*command, "--intake"]) == 0
    return bool(missing)


@asynccontextmanager
async def intake_on(
    exchange: Exchange, people: People, relay_port: int | None = None
) -> AsyncIterator[tuple[RunningIntake, str]]:
    """The intake on the exchange's area, listening on a free port; yields it and its PGP key."""
    if add_intake_keys(exchange.config.path):
        await exchange.reload()
    assert exchange.config.intake is not None
    home = short_home("gpgi")
    relay = None
    if relay_port is not None:
        relay = Relay(
            "127.0.0.1", relay_port, True, f"mash-intake@{HOST}", exchange.config.intake.tls_cert
        )
    pki = housing_pki(exchange)
    dkim_only = frozenset({Authentication.DKIM})
    try:
        settings = replace(
            exchange.config.intake,
            port=0,
            mailboxes=frozenset({"hub", "education"}),
            relay=relay,
            gnupg_home=home / "gnupg",
            replay_store=home / "replay.db",
            domains=(
                DomainRule(PGP_DOMAIN, "police", Policy.PGP, people.pinned()),
                DomainRule(
                    TLS_DOMAIN,
                    "health",
                    Policy.TLS,
                    (),
                    authenticate=dkim_only,
                    dkim_keys=(DkimKey(SELECTOR, HEALTH_SERVER.public_key, "rsa"),),
                ),
                DomainRule(
                    MAIL_ONLY_DOMAIN,
                    "probation",
                    Policy.TLS,
                    (),
                    inbox=relay is not None,
                    authenticate=dkim_only,
                ),
                DomainRule(
                    CERT_DOMAIN,
                    "housing",
                    Policy.TLS,
                    (),
                    authenticate=frozenset({Authentication.CLIENT_CERTIFICATE}),
                    client_ca=pki.ca,
                    client_certificates=frozenset({pki.fingerprint()}),
                ),
                DomainRule(
                    PGP_MAIL_ONLY_DOMAIN,
                    "csc",
                    Policy.PGP,
                    (Staff(SOCIAL_WORKER, people.social_worker.fingerprint),),
                    inbox=relay is not None,
                ),
            ),
        )
        fingerprint = devkeys.create_keyring(settings, home / "public")
        gateway = gnupg.GPG(gnupghome=str(settings.gnupg_home))
        exported = people.gpg.export_keys([p.fingerprint for p in people.known_to_gateway()])
        assert gateway.import_keys(exported).count == len(people.known_to_gateway())
        assert gateway.import_keys(revocation_certificate(people)).results
        people.gpg.import_keys(gateway.export_keys(fingerprint))
        store = SqliteStore(str(exchange.tmp / "intake.db"))
        await store.open()
        try:
            config = replace(exchange.config, intake=settings)
            async with running_intake(config, store, dns) as running:
                yield running, fingerprint
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(drop_home, home)
