"""Where a shell spools ciphertext while sealing: memory up to a few MiB, then a temporary file."""

from __future__ import annotations

import tempfile
from typing import BinaryIO, cast

SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024


def ciphertext_spool() -> BinaryIO:
    """An empty seekable file for ``seal``'s ciphertext; close it when sealing is done."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES, mode="w+b")  # noqa: SIM115 (the caller closes it)
    return cast(BinaryIO, spool)  # typeshed types it IO[bytes]; it is a binary file
