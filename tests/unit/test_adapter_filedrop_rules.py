"""The file drop's rules: only complete files of the profile's patterns are taken, and
archived copies are kept only for their retention."""

from __future__ import annotations

import pytest

from adapters.transports.filedrop import DAY_S, expired, original_name, picked_up

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
