"""The gateway's own GnuPG keyring, through python-gnupg, always off the event loop.

Each python-gnupg call spawns a gpg process and blocks until it ends, so
every call runs in a worker thread: ``encrypt`` goes there itself, and
``decrypted`` and ``verified`` are called from one (acceptance.py opens a
mail's PGP/MIME in a single trip off the event loop). The keyring lives
under keys/private/gnupg (mode 0700): the gateway's decryption key and the
public keys of registered staff, imported by the operator. What a key may
do is not decided here: trust.py checks the result against the pins in the
config, never gpg's web of trust.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gnupg

from gateway.core.errors import GatewayError
from gateway.intake.trust import Verdict, classify


@dataclass(frozen=True)
class Decrypted:
    ok: bool
    plaintext: bytes


class KeyringError(GatewayError):
    """The gateway's GnuPG home cannot be used safely."""


# gpg-agent's sockets live in the GnuPG home, and a Unix socket path holds at most 107 bytes;
# gpg refuses one of exactly 107 (measured with gpg 2.2: a home of 87 characters fails, 86 works).
SOCKET_NAME = "/S.gpg-agent.browser"  # the longest socket name gpg-agent creates
SOCKET_PATH_LIMIT = 106


def usable_home(home: Path) -> Path:
    """``home``, or for a path too long for gpg-agent's sockets, a short symlink to it.

    The link lives in the temp directory, named by a digest of the real path,
    so every process reaches the same agent; an existing link is used only if
    it is ours and points at ``home``.
    """
    if len(str(home)) + len(SOCKET_NAME) <= SOCKET_PATH_LIMIT:
        return home
    target = home.resolve()
    digest = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    link = Path(tempfile.gettempdir()) / f"mash-gnupg-{digest}"
    try:
        link.symlink_to(target, target_is_directory=True)
    except FileExistsError:
        if not (
            link.is_symlink() and link.lstat().st_uid == os.getuid() and link.resolve() == target
        ):
            raise KeyringError(f"{link}: exists and is not our link to {target}") from None
    return link


class Keyring:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._gpg = gnupg.GPG(gnupghome=str(usable_home(home)))

    async def encrypt(self, data: bytes, fingerprints: tuple[str, ...]) -> bytes:
        """ASCII-armoured ciphertext for the pinned keys (pinned in config, so trusted)."""
        return await asyncio.to_thread(self._encrypt, data, fingerprints)

    def verified(self, data: bytes, signature: bytes) -> Verdict:
        """Blocking (a gpg process): call it from a worker thread. python-gnupg takes a
        detached signature only as a file, the signed data on gpg's stdin."""
        with tempfile.NamedTemporaryFile(prefix="sig-", suffix=".asc") as handle:
            handle.write(signature)
            handle.flush()
            result = self._gpg.verify_data(handle.name, data)
        return classify(
            bool(result.valid),
            result.status,
            result.key_status,
            result.fingerprint,
            result.pubkey_fingerprint,
            result.sig_timestamp,
        )

    def decrypted(self, data: bytes) -> Decrypted:
        """Blocking (a gpg process): call it from a worker thread."""
        result = self._gpg.decrypt(data)
        return Decrypted(bool(result.ok), bytes(result.data) if result.ok else b"")

    def _encrypt(self, data: bytes, fingerprints: tuple[str, ...]) -> bytes:
        result = self._gpg.encrypt(data, list(fingerprints), always_trust=True, armor=True)
        if not result.ok:
            raise RuntimeError(f"gpg could not encrypt: {result.status}")
        return bytes(result.data)
