"""Envelope benchmark: what sealing and opening cost, next to the primitives they use.

Run: .venv/bin/python bench/envelope.py [--quick]

Prints, from one run (ratios matter more than absolute times on shared machines):
- raw primitives: Ed25519 sign/verify, HPKE X25519 seal/open of 32 bytes,
  AES-256-GCM and SHA-256 throughput;
- seal and open of a 2 KiB payload for 1 and 5 recipients, and seal+open
  beside the sum of the primitives it is made of (target: at most 2x);
- MB/s and peak RSS for a 1 GiB payload (64 MiB with --quick) streamed from
  and to files, each step in its own subprocess so the RSS is its own
  (target: at most 100 MiB).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.envelope import (
    DecryptionIdentity,
    HeaderFields,
    RecipientKey,
    SigningIdentity,
    TimeWindow,
    open,
    open_bytes,
    seal,
    seal_bytes,
)
from gateway.core.envelope.protocol import HPKE_SUITE
from gateway.core.registry import Agency, KeyUse, PublicKeyRecord, Registry, key_id_for
from gateway.infra.spool import ciphertext_spool

NOW = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
WINDOW = TimeWindow(timedelta(hours=1), timedelta(minutes=5))
AGENCIES = ("police", "health", "childrens-social-care", "probation", "education", "housing")
MIB = 1024 * 1024
SEED = b"mash-gateway envelope benchmark"  # keys are derived from it so subprocesses agree


@dataclass(frozen=True)
class Party:
    agency: str
    sign: Ed25519PrivateKey
    enc: X25519PrivateKey

    @property
    def sign_id(self) -> str:
        return key_id_for(self.agency, KeyUse.SIGN, self.sign.public_key().public_bytes_raw())

    @property
    def enc_id(self) -> str:
        return key_id_for(self.agency, KeyUse.ENCRYPT, self.enc.public_key().public_bytes_raw())


def party(agency: str) -> Party:
    def seed(use: str) -> bytes:
        return hashlib.sha256(SEED + agency.encode() + use.encode()).digest()

    return Party(
        agency,
        Ed25519PrivateKey.from_private_bytes(seed("sign")),
        X25519PrivateKey.from_private_bytes(seed("enc")),
    )


PARTIES = {a: party(a) for a in AGENCIES}


def registry() -> Registry:
    records = []
    for p in PARTIES.values():
        for use, key in (
            (KeyUse.SIGN, p.sign.public_key().public_bytes_raw()),
            (KeyUse.ENCRYPT, p.enc.public_key().public_bytes_raw()),
        ):
            records.append(
                PublicKeyRecord(
                    key_id_for(p.agency, use, key),
                    p.agency,
                    use,
                    key,
                    NOW - timedelta(days=1),
                    NOW + timedelta(days=365),
                )
            )
    return Registry.build([Agency(a, a, a) for a in AGENCIES], records)


def fields(recipients: tuple[str, ...]) -> HeaderFields:
    return HeaderFields(
        message_id=str(uuid.uuid4()),
        correlation_id="mash-2025-0001",
        message_type="Referral",
        sender="police",
        recipients=recipients,
        created_at=NOW,
        purpose="child-safeguarding",
        lawful_bases=("uk-gdpr-6-1-e",),
    )


def signer() -> SigningIdentity:
    p = PARTIES["police"]
    return SigningIdentity("police", p.sign_id, p.sign)


def recipient_keys(recipients: tuple[str, ...]) -> list[RecipientKey]:
    return [RecipientKey(a, PARTIES[a].enc_id, PARTIES[a].enc.public_key()) for a in recipients]


def identity(agency: str) -> DecryptionIdentity:
    p = PARTIES[agency]
    return DecryptionIdentity(agency, {p.enc_id: p.enc})


def per_call_us(fn: Callable[[], object], budget_s: float = 0.3) -> float:
    """Best of 5 repeats, each sized to about budget_s / 5: the least disturbed figure."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * budget_s / 5 / 0.2))
    return min(timer.repeat(5, number)) / number * 1e6


def throughput_mb_s(fn: Callable[[bytes], object], size: int = MIB) -> float:
    data = os.urandom(size)
    return size / per_call_us(lambda: fn(data)) / MIB * 1e6


def primitives() -> dict[str, float]:
    key = PARTIES["police"].sign
    public = key.public_key()
    message = os.urandom(1024)  # about a header's size
    signature = key.sign(message)
    enc = PARTIES["health"].enc
    wrapped = HPKE_SUITE.encrypt(os.urandom(32), enc.public_key(), info=b"bench")
    aead = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    two_k = os.urandom(2048)
    sealed_2k = aead.encrypt(nonce, two_k, None)
    return {
        "ed25519_sign": per_call_us(lambda: key.sign(message)),
        "ed25519_verify": per_call_us(lambda: public.verify(signature, message)),
        "hpke_seal_32": per_call_us(
            lambda: HPKE_SUITE.encrypt(b"k" * 32, enc.public_key(), info=b"bench")
        ),
        "hpke_open_32": per_call_us(lambda: HPKE_SUITE.decrypt(wrapped, enc, info=b"bench")),
        "aes_gcm_2k_encrypt": per_call_us(lambda: aead.encrypt(nonce, two_k, None)),
        "aes_gcm_2k_decrypt": per_call_us(lambda: aead.decrypt(nonce, sealed_2k, None)),
        "sha256_2k": per_call_us(lambda: hashlib.sha256(two_k).digest()),
        "aes_gcm_mb_s": throughput_mb_s(lambda d: aead.encrypt(nonce, d, None)),
        "sha256_mb_s": throughput_mb_s(lambda d: hashlib.sha256(d).digest()),
    }


def envelope_2k(recipients: tuple[str, ...]) -> tuple[float, float]:
    reg = registry()
    payload = os.urandom(2048)
    container = seal_bytes(fields(recipients), payload, signer(), recipient_keys(recipients))
    reader = identity(recipients[0])
    seal_us = per_call_us(
        lambda: seal_bytes(fields(recipients), payload, signer(), recipient_keys(recipients))
    )
    open_us = per_call_us(lambda: open_bytes(container, reg, reader, NOW, WINDOW, None))
    return seal_us, open_us


def child(step: str, source: Path, target: Path) -> None:
    """One streaming step in this process; prints seconds and peak RSS in KiB."""
    started = time.perf_counter()
    with source.open("rb") as reader, target.open("wb") as writer, ciphertext_spool() as spool:
        if step == "seal":
            seal(fields(("health",)), reader, signer(), recipient_keys(("health",)), writer, spool)
        elif step == "open":
            open(reader, registry(), identity("health"), NOW, WINDOW, None, writer)
    elapsed = time.perf_counter() - started
    print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_child(step: str, source: Path, target: Path) -> tuple[float, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", step, str(source), str(target)],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, rss_kib = result.stdout.split()
    return float(seconds), int(rss_kib) / 1024


def streaming(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mash-bench-") as tmp:
        plain, sealed, opened = Path(tmp, "plain"), Path(tmp, "sealed"), Path(tmp, "opened")
        block = os.urandom(MIB)
        with plain.open("wb") as f:
            for _ in range(size // MIB):
                f.write(block)
        _, baseline_rss = run_child("none", plain, Path(tmp, "none"))
        seal_s, seal_rss = run_child("seal", plain, sealed)
        open_s, open_rss = run_child("open", sealed, opened)
        if opened.stat().st_size != size:
            raise SystemExit("streaming round trip lost bytes")
    mb = size / MIB
    return {
        "baseline_rss": baseline_rss,
        "seal_mb_s": mb / seal_s,
        "seal_rss": seal_rss,
        "open_mb_s": mb / open_s,
        "open_rss": open_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 1 GiB")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "SOURCE", "TARGET"), help="internal")
    args = parser.parse_args()
    if args.child:
        step, source, target = args.child
        child(step, Path(source), Path(target))
        return

    size = (64 if args.quick else 1024) * MIB
    print(f"# envelope benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    p = primitives()
    one_seal, one_open = envelope_2k(("health",))
    five_seal, five_open = envelope_2k(AGENCIES[1:])
    seal_parts = p["hpke_seal_32"] + p["aes_gcm_2k_encrypt"] + 2 * p["ed25519_sign"]
    open_parts = p["hpke_open_32"] + p["aes_gcm_2k_decrypt"] + 2 * p["ed25519_verify"]
    hashes = 4 * p["sha256_2k"]  # plaintext and ciphertext, on each side
    parts = seal_parts + open_parts + hashes
    s = streaming(size)

    rows = [
        ("Ed25519 sign (1 KiB)", f"{p['ed25519_sign']:.1f} µs"),
        ("Ed25519 verify (1 KiB)", f"{p['ed25519_verify']:.1f} µs"),
        ("HPKE X25519 seal, 32 B", f"{p['hpke_seal_32']:.1f} µs"),
        ("HPKE X25519 open, 32 B", f"{p['hpke_open_32']:.1f} µs"),
        ("AES-256-GCM encrypt 2 KiB", f"{p['aes_gcm_2k_encrypt']:.1f} µs"),
        ("SHA-256 2 KiB", f"{p['sha256_2k']:.1f} µs"),
        ("AES-256-GCM, 1 MiB buffers", f"{p['aes_gcm_mb_s']:.0f} MB/s"),
        ("SHA-256, 1 MiB buffers", f"{p['sha256_mb_s']:.0f} MB/s"),
        ("seal 2 KiB, 1 recipient", f"{one_seal:.1f} µs"),
        ("open 2 KiB, 1 recipient", f"{one_open:.1f} µs"),
        ("seal 2 KiB, 5 recipients", f"{five_seal:.1f} µs"),
        ("open 2 KiB, 5 recipients", f"{five_open:.1f} µs"),
        ("seal+open 2 KiB, 1 recipient", f"{one_seal + one_open:.1f} µs"),
        ("  sum of its primitives", f"{parts:.1f} µs"),
        ("  ratio (target <= 2x)", f"{(one_seal + one_open) / parts:.2f}x"),
        (f"seal {size // MIB} MiB, file to file", f"{s['seal_mb_s']:.0f} MB/s"),
        (f"open {size // MIB} MiB, file to file", f"{s['open_mb_s']:.0f} MB/s"),
        ("peak RSS, interpreter + imports only", f"{s['baseline_rss']:.0f} MiB"),
        (f"peak RSS, seal {size // MIB} MiB (target <= 100)", f"{s['seal_rss']:.0f} MiB"),
        (f"peak RSS, open {size // MIB} MiB (target <= 100)", f"{s['open_rss']:.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'What':<{width}} | Measured |")
    print(f"|{'-' * (width + 2)}|----------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
