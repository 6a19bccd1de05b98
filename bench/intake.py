"""Secure-mail intake benchmark: PGP/MIME over SMTP with STARTTLS beside raw python-gnupg.

Run: .venv/bin/python bench/intake.py [--quick] [--profile]

On the local RabbitMQ (127.0.0.1:5672, guest/guest), in a fresh vhost that is
deleted afterwards, with the demo area `init` writes, the router in its own
process (``python -m gateway run``, as deployed) and the intake in this one
(the wiring `mash-gateway intake` uses, through the integration tests'
``intake_on``: a `pgp` domain for police with pinned staff keys), it prints:

- intake: N Referrals signed by a pinned police officer's key and encrypted to
  the intake's key (RFC 3156), each signed on its own (the intake refuses a
  copy of a mail it accepted as a replay; the mails are made before the
  clock starts), each in its own SMTP session with STARTTLS,
  sent by 50 concurrent senders in a separate process (the senders are other
  machines in a deployment). A mail counts when its 250 arrives, which the
  intake sends only after the broker confirmed the sealed message. Rate over
  the whole run, and the latency of each mail from connect to the 250;
- raw (the ceiling): python-gnupg decrypting the same ciphertext and
  verifying the same detached signature, with the same keyring, as many calls
  at once as the intake gets (asyncio's default worker threads, which is
  where the intake runs gpg). Half of the raw calls run before the intake and
  half after, so drift on a shared machine falls on both sides alike; a short
  one-at-a-time run is printed beside it;
- bare gpg: the same two gpg processes per pair, with python-gnupg's command
  line, started by subprocess.run (no reader threads, no status parsing in
  Python), to price what python-gnupg itself costs per call;
- bare STARTTLS sessions that send no mail (EHLO, STARTTLS, EHLO, NOOP), to
  show what the SMTP and TLS part costs on its own;
- CPU time per mail of each process (this one, and of it the event-loop
  thread; its gpg children, the senders, the router), and per raw
  decrypt+verify: on a shared 2-core box
  CPU time is steadier than wall time and says where the time goes.

Targets: intake >= 80% of the raw rate; p99 acceptance <= 1 s with 50 senders.
The intake logs warnings only. --profile prints the intake's event-loop
profile (wall time, so it includes waiting for a core).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import os
import platform
import pstats
import queue
import resource
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gnupg

from bench.e2e import cpu_seconds, fresh_vhost, percentile, print_table, spawn
from gateway.cli import main as cli_main
from gateway.config.area_config import load_config
from gateway.core.resources import schemas_dir
from gateway.demo.mail import send_over_starttls
from gateway.infra import logs
from gateway.intake import mime
from gateway.intake.pgp import usable_home
from gateway.store.sqlite import SqliteStore
from tests.integration.exchange_harness import Exchange
from tests.integration.intake_harness import (
    HUB,
    OFFICER,
    People,
    add_intake_keys,
    client_tls,
    content_with_xml,
    encrypted,
    intake_on,
    made_people,
    mail,
    signed,
)

SENDERS = 50
UPN = b'<Identifier scheme="upn">B801200005001</Identifier>'
# The school's example referral; police may not pass on the child's UPN.
REFERRAL = (schemas_dir() / "examples" / "valid" / "referral.xml").read_bytes().replace(UPN, b"")
WARM_UP = 20
GPG_THREADS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor, as the intake's


# --- the senders (a separate process) ------------------------------------------------


def senders(port: int, n: int, entity_file: Path, sessions_only: bool) -> None:
    """Send ``n`` mails, the entities in ``entity_file`` (one base64 line each), or open ``n``
    bare sessions, from SENDERS threads; print the elapsed time, this process's CPU time
    and each latency as JSON."""
    entities = [base64.b64decode(line) for line in entity_file.read_text().split()]
    # One client context for all: ssl.create_default_context loads the system's CA bundle,
    # which costs more CPU than the handshake (the harness's send builds one per mail).
    tls = client_tls()
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(n):
        work.put(i)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def sender() -> None:
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            data = b"" if sessions_only else mail(OFFICER, entities[i])  # a new Message-ID each
            started = time.perf_counter()
            if sessions_only:
                code, reply = session(port, tls)
            else:
                code, reply = send_over_starttls(port, tls, OFFICER, HUB, data)
            took = time.perf_counter() - started
            with lock:
                if code == 250:
                    latencies.append(took)
                else:
                    failures.append(f"{code} {reply}")

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    result = {"elapsed": elapsed, "cpu": cpu, "latencies": latencies, "failures": failures[:5]}
    print(json.dumps(result))


@dataclass(frozen=True)
class Sent:
    rate: float  # mails/s
    latencies: list[float]  # sorted, seconds
    senders_cpu: float  # CPU seconds the senders' process used


def session(port: int, tls: ssl.SSLContext) -> tuple[int, str]:
    """A session that sends no mail: EHLO, STARTTLS, EHLO, NOOP, QUIT."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.starttls(context=tls)
        client.ehlo()
        code, reply = client.noop()
        return code, reply.decode()


async def send_all(port: int, n: int, entity_file: Path, sessions_only: bool = False) -> Sent:
    """Run the senders' process and wait for it. Any refusal ends the run."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--senders",
        str(port),
        str(n),
        str(entity_file),
        "sessions" if sessions_only else "mails",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"senders exited with {process.returncode}")
    result = json.loads(out)
    if result["failures"]:
        raise SystemExit(f"the intake refused mails: {result['failures']}")
    return Sent(n / result["elapsed"], sorted(result["latencies"]), result["cpu"])


def own_and_children_cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of its waited-for children (gpg calls, the senders)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


# --- raw python-gnupg -----------------------------------------------------------------


class RawGpg:
    """Decrypt + verify exactly as the intake's keyring does, with its keyring, without the rest."""

    def __init__(self, home: Path, raw_mail: bytes) -> None:
        self.gpg = gnupg.GPG(gnupghome=str(usable_home(home)))
        self.ciphertext = mime.encrypted_payload(mime.entity(raw_mail))
        result = self.gpg.decrypt(self.ciphertext)
        assert result.ok, result.status
        parts = mime.signed_parts(mime.entity(bytes(result.data)))
        self.signed, self.signature = parts.signed, parts.signature

    def once(self) -> None:
        decrypted = self.gpg.decrypt(self.ciphertext)
        with tempfile.NamedTemporaryFile(prefix="sig-", suffix=".asc") as handle:
            handle.write(self.signature)
            handle.flush()
            verified = self.gpg.verify_data(handle.name, self.signed)
        if not (decrypted.ok and verified.valid):
            raise SystemExit(f"raw gpg failed: {decrypted.status} / {verified.status}")

    def rate(self, n: int, threads: int) -> tuple[int, float]:
        """``n`` decrypt+verify pairs on ``threads`` threads; (n, seconds)."""
        return rate(self.once, n, threads)


class BareGpg:
    """The same two gpg processes, with python-gnupg's own command line, started with
    subprocess.run: no reader and writer threads, no status parsing in Python. What
    python-gnupg costs per call is the difference to RawGpg."""

    def __init__(self, raw: RawGpg, folder: Path) -> None:
        self.command = raw.gpg.make_args([], False)
        self.ciphertext, self.signed = raw.ciphertext, raw.signed
        self.signature = folder / "signature.asc"
        self.signature.write_bytes(raw.signature)

    def once(self) -> None:
        decrypted = subprocess.run(
            [*self.command, "--decrypt"], input=self.ciphertext, capture_output=True
        )
        verified = subprocess.run(
            [*self.command, "--verify", str(self.signature), "-"],
            input=self.signed,
            capture_output=True,
        )
        if decrypted.returncode or b"[GNUPG:] GOODSIG " not in verified.stderr:
            raise SystemExit(f"bare gpg failed: {decrypted.stderr!r} / {verified.stderr!r}")


def rate(once: Callable[[], None], n: int, threads: int) -> tuple[int, float]:
    """``n`` calls of ``once`` on ``threads`` threads; (n, seconds)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(once) for _ in range(n)]:
            future.result()
    return n, time.perf_counter() - started


# --- the run -------------------------------------------------------------------------


async def bench(n: int, profile: bool) -> dict[str, float]:
    r: dict[str, float] = {}
    url, delete = await fresh_vhost("intake")
    with tempfile.TemporaryDirectory(prefix="mash-bench-intake-") as tmp, made_people() as people:
        area = Path(tmp, "area")
        assert cli_main(["init", str(area), "--broker-url", url]) == 0
        config_path = area / "gateway.toml"
        add_intake_keys(config_path)
        config = load_config(str(config_path))
        router = [sys.executable, "-m", "gateway", "--config", str(config_path), "run"]
        child = await spawn([*router, "--json-logs"], area / "router.log", "router.started")
        # intake_on reads only the exchange's config and directory; the router is the child.
        exchange = Exchange(config, url, SqliteStore(str(area / "unused.db")), Path(tmp))
        try:
            async with intake_on(exchange, people) as (running, gateway):
                r |= await measure(
                    running.port,
                    running.config.gnupg_home,
                    people,
                    gateway,
                    n,
                    child.process.pid,
                    profile,
                )
        finally:
            child.stop()
            await delete()
    return r


def write_entities(path: Path, count: int, people: People, gateway: str) -> None:
    """``count`` Referrals, each signed and encrypted on its own, one base64 line each."""

    def one(i: int) -> bytes:
        content = content_with_xml(REFERRAL, f"Referral attached ({i}).")
        return base64.b64encode(encrypted(signed(content, people, people.officer), people, gateway))

    with ThreadPoolExecutor(max_workers=GPG_THREADS) as pool:
        path.write_bytes(b"\n".join(pool.map(one, range(count))) + b"\n")


async def measure(
    port: int,
    home: Path,
    people: People,
    gateway: str,
    n: int,
    router_pid: int,
    profile: bool,
) -> dict[str, float]:
    entity = encrypted(signed(content_with_xml(REFERRAL), people, people.officer), people, gateway)
    raw_mail = mail(OFFICER, entity)
    raw = RawGpg(home, raw_mail)
    print(f"# gpg {'.'.join(map(str, raw.gpg.version or ()))}, {GPG_THREADS} worker threads")
    with tempfile.TemporaryDirectory(prefix="mash-bench-entities-") as folder:
        warm_up, path = Path(folder, "warm-up"), Path(folder, "mails")
        await asyncio.to_thread(write_entities, warm_up, WARM_UP, people, gateway)
        await asyncio.to_thread(write_entities, path, n, people, gateway)
        await send_all(port, WARM_UP, warm_up)
        await asyncio.to_thread(raw.rate, WARM_UP, GPG_THREADS)
        before = own_and_children_cpu()[0]
        sessions = await send_all(port, max(100, n // 5), path, sessions_only=True)
        session_cpu = (own_and_children_cpu()[0] - before) / max(100, n // 5)
        serial = await asyncio.to_thread(raw.rate, max(30, n // 10), 1)
        cpu_before = own_and_children_cpu()
        first = await asyncio.to_thread(raw.rate, n // 2, GPG_THREADS)
        cpu_raw = own_and_children_cpu()
        router_before = cpu_seconds(router_pid)
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()  # the event loop's thread: SMTP, TLS, MIME, checks, seal, publish
        loop_before = time.thread_time()  # this thread runs the event loop, so the intake's
        sent = await send_all(port, n, path)
        loop_cpu = time.thread_time() - loop_before  # SMTP, TLS, checks, seal, publish
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        router_cpu = cpu_seconds(router_pid) - router_before
        cpu_intake = own_and_children_cpu()
        second = await asyncio.to_thread(raw.rate, n - n // 2, GPG_THREADS)
        cpu_after = own_and_children_cpu()
        bare = BareGpg(raw, Path(folder))
        bare_n = max(50, n // 4)
        bare_rate = await asyncio.to_thread(rate, bare.once, bare_n, GPG_THREADS)
        cpu_bare = own_and_children_cpu()
    raw_own = cpu_raw[0] - cpu_before[0] + cpu_after[0] - cpu_intake[0]
    raw_cpu = sum(cpu_raw) - sum(cpu_before) + sum(cpu_after) - sum(cpu_intake)
    gpg_cpu = cpu_intake[1] - cpu_raw[1] - sent.senders_cpu
    latencies = sent.latencies
    return {
        "n": n,
        "mail_size": len(raw_mail),
        "ciphertext_size": len(raw.ciphertext),
        "serial": serial[0] / serial[1],
        "raw": (first[0] + second[0]) / (first[1] + second[1]),
        "intake": sent.rate,
        "sessions": sessions.rate,
        "session_cpu_ms": 1000 * session_cpu,
        "raw_cpu_ms": 1000 * raw_cpu / n,
        "raw_own_cpu_ms": 1000 * raw_own / n,
        "bare": bare_n / bare_rate[1],
        "bare_cpu_ms": 1000 * (sum(cpu_bare) - sum(cpu_after)) / bare_n,
        "bare_own_cpu_ms": 1000 * (cpu_bare[0] - cpu_after[0]) / bare_n,
        "loop_cpu_ms": 1000 * loop_cpu / n,
        "intake_cpu_ms": 1000 * (cpu_intake[0] - cpu_raw[0]) / n,
        "gpg_cpu_ms": 1000 * gpg_cpu / n,
        "senders_cpu_ms": 1000 * sent.senders_cpu / n,
        "router_cpu_ms": 1000 * router_cpu / n,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": latencies[-1],
    }


def report(r: dict[str, float]) -> None:
    n = int(r["n"])
    rows = [
        ("mail / PGP ciphertext size", f"{r['mail_size']:.0f} / {r['ciphertext_size']:.0f} B"),
        ("raw gpg decrypt+verify, one at a time", f"{r['serial']:.1f} /s"),
        (f"raw gpg decrypt+verify, {GPG_THREADS} threads, {n}", f"{r['raw']:.1f} /s"),
        (f"intake: {n} mails, {SENDERS} senders, STARTTLS", f"{r['intake']:.1f} msg/s"),
        ("  intake / raw gpg (target >= 80%)", f"{r['intake'] / r['raw']:.0%}"),
        (
            f"p50 / p99 acceptance, {SENDERS} senders (target p99 <= 1 s)",
            f"{r['p50'] * 1000:.0f} / {r['p99'] * 1000:.0f} ms",
        ),
        ("  slowest acceptance", f"{r['max'] * 1000:.0f} ms"),
        (f"bare STARTTLS sessions, no mail, {SENDERS} senders", f"{r['sessions']:.0f} /s"),
        ("CPU per raw decrypt+verify (bench + gpg processes)", f"{r['raw_cpu_ms']:.1f} ms"),
        ("  of it, python-gnupg in the bench process", f"{r['raw_own_cpu_ms']:.1f} ms"),
        (
            f"bare gpg (subprocess.run, no python-gnupg), {GPG_THREADS} threads",
            f"{r['bare']:.1f} /s",
        ),
        ("CPU per bare decrypt+verify (bench + gpg processes)", f"{r['bare_cpu_ms']:.1f} ms"),
        ("  of it, starting gpg in the bench process", f"{r['bare_own_cpu_ms']:.1f} ms"),
        ("CPU per accepted mail: intake process", f"{r['intake_cpu_ms']:.1f} ms"),
        ("  of it, the event-loop thread", f"{r['loop_cpu_ms']:.1f} ms"),
        ("  of it, a bare STARTTLS session without a mail", f"{r['session_cpu_ms']:.1f} ms"),
        ("  its gpg processes", f"{r['gpg_cpu_ms']:.1f} ms"),
        ("  the senders' process (client side)", f"{r['senders_cpu_ms']:.1f} ms"),
        ("  the router process", f"{r['router_cpu_ms']:.1f} ms"),
    ]
    print_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 mails instead of 3,000")
    parser.add_argument(
        "--profile", action="store_true", help="print the intake's event-loop profile"
    )
    parser.add_argument("--senders", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.senders:
        port, count, entity_file, what = args.senders
        senders(int(port), int(count), Path(entity_file), what == "sessions")
        return
    logs.configure(json=True, quiet=True)
    print(f"# secure-mail intake benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, "
        "router in its own process"
    )

    async def run() -> dict[str, float]:
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
        return await bench(300 if args.quick else 3_000, args.profile)

    try:
        r = asyncio.run(run())
    except asyncio.CancelledError:
        raise SystemExit("interrupted; the router and the vhost are cleaned up") from None
    report(r)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
