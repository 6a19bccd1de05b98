"""A plain (non-editable) install ships the schemas and the agency profiles, and finds them."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("police", "education", "csc", "probation", "health")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], Path]:
    """The wheel's file names, and a folder it is unpacked into (as site-packages would be)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp / "dist"), str(ROOT)],
        check=True,
    )  # fmt: skip
    (wheel,) = (tmp / "dist").glob("mash_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp / "site")
        return set(archive.namelist()), tmp / "site"


def run_isolated(site: Path, code: str, *args: str) -> str:
    """``code`` in a fresh interpreter that sees only the unpacked wheel, not this checkout."""
    return subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, sys.argv[1]); {code}",
         str(site), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


def test_wheel_ships_schemas_and_resolves_them_when_installed(
    installed: tuple[set[str], Path],
) -> None:
    names, site = installed
    assert "gateway/_schemas/envelope-header.xsd" in names
    assert "gateway/_schemas/examples/valid/referral.xml" in names
    assert not any(name.endswith(".key") for name in names)
    found = run_isolated(
        site, "from gateway.core.resources import schemas_dir; print(schemas_dir())"
    )
    assert found == str(site / "gateway" / "_schemas")


def test_wheel_ships_every_profile_and_they_load_when_installed(
    installed: tuple[set[str], Path],
) -> None:
    names, site = installed
    for profile in PROFILES:
        assert f"adapters/profiles/{profile}/profile.toml" in names
        assert any(n.startswith(f"adapters/profiles/{profile}/samples/") for n in names)
    loaded = run_isolated(
        site,
        "from adapters.profile import BUILTIN, load_profile; print(BUILTIN); "
        "[load_profile(BUILTIN / p) for p in sys.argv[2:]]",
        *PROFILES,
    )
    assert loaded == str(site / "adapters" / "profiles")


def test_wheel_ships_the_consoles_templates_and_stylesheet(
    installed: tuple[set[str], Path],
) -> None:
    names, _ = installed
    console = ROOT / "gateway" / "console"
    shipped = [
        p.relative_to(ROOT).as_posix() for p in console.rglob("*") if p.suffix in (".html", ".css")
    ]
    assert shipped and set(shipped) <= names, sorted(set(shipped) - names)
