"""Large buffers go back to the operating system when they are freed (glibc's malloc).

glibc serves a block of 128 KiB or more with its own mmap and unmaps it on
free, but the first time it frees such a block it raises that threshold to
the block's size (up to 32 MiB). From then on a transfer's 1 MiB pieces,
read buffers and broker frames come from the heap arenas instead, whose
freed space the process keeps, fragmented, for good. The csc adapter kept
about 35 MiB that way after a 1 GiB upload, and receiving a 1 GiB transfer
on top of it peaked at 152 to 157 MiB; with the threshold fixed it returns
to its 93 MiB after each and peaks at 111 (bench/README.md, "HTTP upload").
The cost is a fresh mapping (page faults) per large buffer, small beside
sealing or opening the megabyte it holds.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, held there


def return_large_buffers() -> bool:
    """Fix the mmap threshold; False where the C library has no mallopt (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
