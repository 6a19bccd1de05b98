"""A GnuPG home too long for gpg-agent's socket paths is reached through a short, checked link."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.intake.pgp import KeyringError, usable_home

pytestmark = pytest.mark.unit


def test_a_short_home_is_used_as_it_is(tmp_path: Path) -> None:
    assert usable_home(Path("/area/keys/private/gnupg")) == Path("/area/keys/private/gnupg")


def test_a_long_home_gets_a_short_link_to_it(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 90) / "gnupg"
    home.mkdir(parents=True)
    link = usable_home(home)
    try:
        assert len(str(link)) < 60 and link.resolve() == home.resolve()
        assert usable_home(home) == link  # the same link again, for every process
    finally:
        link.unlink()


def test_a_link_pointing_elsewhere_is_refused(tmp_path: Path) -> None:
    home = tmp_path / ("y" * 90) / "gnupg"
    home.mkdir(parents=True)
    link = usable_home(home)
    link.unlink()
    link.symlink_to(tmp_path)
    try:
        with pytest.raises(KeyringError, match="not our link"):
            usable_home(home)
    finally:
        link.unlink()


def test_the_boundary_is_where_gpg_puts_it(tmp_path: Path) -> None:
    """gpg-agent fails in a home of 87 characters (its socket path would be 107 bytes)."""
    fits = Path("/" + "a" * 85)
    assert usable_home(fits) == fits  # 86 characters: gpg works there
    home = tmp_path / ("h" * (87 - len(str(tmp_path)) - 1))
    home.mkdir()
    assert len(str(home)) == 87
    link = usable_home(home)
    try:
        assert link != home and link.resolve() == home.resolve()
    finally:
        link.unlink()
