"""Size: a 64 MiB payload streams through seal and open with bounded memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest
from envelope_keys import NOW, WINDOW, fields, keys, registry

from gateway.core.envelope import open, seal
from gateway.infra.spool import ciphertext_spool

pytestmark = pytest.mark.unit

SIZE = 64 * 1024 * 1024
BLOCK = os.urandom(1024 * 1024)
PEAK_LIMIT = 16 * 1024 * 1024  # spool (4 MiB) + copy buffer (1 MiB) + a few segments


def test_64_mib_seals_and_opens_through_files_with_bounded_python_memory(tmp_path: Path) -> None:
    source, sealed, opened_path = tmp_path / "in", tmp_path / "sealed", tmp_path / "out"
    expected = hashlib.sha256()
    with source.open("wb") as f:
        for _ in range(SIZE // len(BLOCK)):
            f.write(BLOCK)
            expected.update(BLOCK)
    tracemalloc.start()
    try:
        with source.open("rb") as plaintext, sealed.open("wb") as out, ciphertext_spool() as spool:
            signer, recipient = keys("police").signer(), keys("health").recipient()
            seal(fields(), plaintext, signer, [recipient], out, spool)
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with sealed.open("rb") as container, opened_path.open("wb") as out:
            opened = open(container, registry(), keys("health").identity(), NOW, WINDOW, None, out)
        _, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened.plaintext_sha256 == expected.hexdigest()
    assert opened_path.stat().st_size == SIZE
    assert seal_peak < PEAK_LIMIT, f"seal peak {seal_peak} bytes"
    assert open_peak < PEAK_LIMIT, f"open peak {open_peak} bytes"
