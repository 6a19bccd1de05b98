"""The ``[limits]`` table of gateway.toml: how large attachments may be, and how many.

Pure: the TOML value in, ``AttachmentLimits`` out, or the error ``fail``
builds naming the key path. Layout (every key optional)::

    [limits]
    max_attachment = "5GiB"        # one file; bytes as an integer, or with KiB/MiB/GiB/TiB
    max_total = "20GiB"            # all files of one message together
    max_attachments = 100          # files per message (the schemas allow at most 100)
    transfer_timeout = "6h"        # an incomplete transfer is dropped after this (s/m/h/d)

The defaults serve a MASH (a video of an interview, a folder of scans), not
a mail server: gigabytes, not megabytes. The checks themselves are pure
(gateway/core/attachments.py) and run before a byte of a file is read.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from gateway.config.config_checks import Fail, known, table
from gateway.core.attachments import AttachmentLimits
from gateway.core.envelope.protocol import MAX_ATTACHMENTS

SIZE = re.compile(r"([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?")
_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
DURATION = re.compile(r"([0-9]+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEYS = {"max_attachment", "max_total", "max_attachments", "transfer_timeout"}


def _size(doc: dict[str, Any], key: str, default: int, fail: Fail) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool):
        raise fail(f"limits.{key}", "must be a size, e.g. 5GiB or 1048576")
    if isinstance(value, int):
        number = value
    else:
        match = SIZE.fullmatch(str(value).strip())
        if match is None:
            raise fail(f"limits.{key}", f"{value!r} is not a size, e.g. 5GiB, 500MiB or 1048576")
        number = int(match.group(1)) * _UNITS[match.group(2)]
    if number <= 0:
        raise fail(f"limits.{key}", "must be more than 0 bytes")
    return number


def parse_limits(value: Any, fail: Fail) -> AttachmentLimits:
    defaults = AttachmentLimits()
    if value is None:
        return defaults
    doc = dict(table(value, "limits", fail))
    known(doc, "limits", KEYS, fail)
    count = doc.get("max_attachments", defaults.max_attachments)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_ATTACHMENTS:
        raise fail("limits.max_attachments", f"must be a whole number from 0 to {MAX_ATTACHMENTS}")
    timeout = doc.get("transfer_timeout")
    if timeout is None:
        transfer_timeout = defaults.transfer_timeout
    else:
        match = DURATION.fullmatch(str(timeout).strip())
        if match is None or int(match.group(1)) == 0:
            raise fail("limits.transfer_timeout", f"{timeout!r} is not a duration, e.g. 6h or 90m")
        transfer_timeout = timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
    limits = AttachmentLimits(
        max_attachment_bytes=_size(doc, "max_attachment", defaults.max_attachment_bytes, fail),
        max_total_bytes=_size(doc, "max_total", defaults.max_total_bytes, fail),
        max_attachments=count,
        transfer_timeout=transfer_timeout,
    )
    if limits.max_attachment_bytes > limits.max_total_bytes:
        raise fail("limits.max_attachment", "is larger than limits.max_total")
    return limits
