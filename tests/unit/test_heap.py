"""Adapter processes fix glibc's mmap threshold: a freed transfer buffer leaves the heap."""

from __future__ import annotations

import sys

import pytest

from gateway.infra.heap import return_large_buffers

pytestmark = pytest.mark.unit


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_threshold_is_fixed_on_glibc() -> None:
    assert return_large_buffers()
