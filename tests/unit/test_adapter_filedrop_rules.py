"""The file drop's pick-up rule: only complete files of the profile's patterns are taken."""

from __future__ import annotations

import pytest

from adapters.transports.filedrop import original_name, picked_up

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
