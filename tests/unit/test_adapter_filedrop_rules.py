"""The file drop's rules: only complete regular files of the profile's patterns, with names
that fit, are taken; reasons show names as text; archived copies are kept only for their
retention."""

from __future__ import annotations

import os
import stat

import pytest

from adapters.transports.durable import DAY_S, expired
from adapters.transports.filedrop import (
    MAX_NAME_BYTES,
    fitted,
    original_name,
    picked_up,
    shown,
    unfit,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("ppn-0042.xml", True),
        ("ppn-0042.xml.tmp", False),  # still being written: renamed when complete
        (".ppn-0042.xml", False),  # a hidden temp name
        ("ppn-0042.XML", False),  # patterns are case-sensitive, as the profile states them
        ("cfc.csv", False),  # not this profile's format
    ],
)
def test_only_complete_files_of_the_profile_are_picked_up(name: str, taken: bool) -> None:
    assert picked_up(name, ("*.xml",)) is taken


def test_a_claimed_name_keeps_the_agency_file_name() -> None:
    assert original_name("20261123T090000Z-0000abcd--ppn--0042.xml") == "ppn--0042.xml"


def test_archived_files_expire_after_their_retention_and_not_before() -> None:
    now = 1_800_000_000.0
    entries = [
        ("old--ppn.xml", now - 31 * DAY_S),
        ("old--ppn.xml.sent", now - 31 * DAY_S),
        ("edge--ppn.xml", now - 30 * DAY_S + 1),  # one second short of its 30 days
        ("new--ppn.xml", now - 60),
    ]
    assert expired(entries, now, 30) == ["old--ppn.xml", "old--ppn.xml.sent"]
    assert expired(entries, now, 0.5) == ["edge--ppn.xml", "old--ppn.xml", "old--ppn.xml.sent"]


REGULAR, LINK, FIFO, FOLDER = stat.S_IFREG, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFDIR


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        (LINK, "a symbolic link"),
        (FIFO, "a FIFO"),
        (FOLDER, "a folder"),
        (stat.S_IFCHR, "a character device"),
        (stat.S_IFBLK, "a block device"),
        (stat.S_IFSOCK, "a socket"),
    ],
)
def test_only_regular_files_are_taken(mode: int, kind: str) -> None:
    problem = unfit("ppn.xml", mode | 0o644)
    assert problem is not None and problem.stage == "not-a-file"
    assert problem.reason.startswith(f"ppn.xml: is {kind}, not a regular file")
    assert unfit("ppn.xml", REGULAR | 0o644) is None


def test_a_name_too_long_to_claim_is_refused_and_every_filed_name_fits() -> None:
    longest = "p" * (MAX_NAME_BYTES - 4) + ".xml"
    assert unfit(longest, REGULAR) is None
    claimed = "20261123T090000Z-0000abcd--" + longest
    assert len(f".{claimed}.reason.12345678.part") == 255  # its reason's temp name still fits
    problem = unfit("p" * 240 + ".xml", REGULAR)
    assert problem is not None and problem.stage == "name"
    assert f"the name is 244 bytes long, over the {MAX_NAME_BYTES}" in problem.reason
    wide = "é" * 200 + ".xml"  # 404 bytes in 204 characters: bytes are what count
    assert unfit(wide, REGULAR) is not None
    assert len(os.fsencode(fitted(wide))) <= MAX_NAME_BYTES


def test_a_name_in_a_reason_is_printable_text() -> None:
    assert shown("ppn\n0042.xml") == "ppn\\n0042.xml"  # no forged lines in a reason file
    assert shown(os.fsdecode(b"ppn-\xff.xml")) == "ppn-\\xff.xml"  # bytes that are not UTF-8
    assert shown("ppn-ñ.xml") == "ppn-ñ.xml"
