"""`mash-gateway validate`: what a sender sees when checking files before sending them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.core.resources import schemas_dir

pytestmark = pytest.mark.unit

EXAMPLES = schemas_dir() / "examples"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("valid/referral.xml", "valid/decision.xml", "invalid/bad-nhs-check-digit.xml"):
        shutil.copy(EXAMPLES / name, tmp_path / Path(name).name)
    return tmp_path


def test_good_files_print_ok_with_their_type_and_exit_zero(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    referral, decision = files / "referral.xml", files / "decision.xml"
    assert main(["validate", str(referral), str(decision)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{referral}: ok (Referral)", f"{decision}: ok (Decision)"]
    assert err == ""


def test_a_bad_file_prints_its_problems_and_exits_one_but_good_files_still_report(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, good = files / "bad-nhs-check-digit.xml", files / "referral.xml"
    assert main(["validate", str(bad), str(good)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}: ok (Referral)"]
    assert err.splitlines() == [
        f"{bad}:29: Identifier: NHS number 9434765871 fails its check digit"
    ]


def test_every_problem_of_a_file_is_printed(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (files / "referral.xml").read_text()
    twice_bad = files / "twice-bad.xml"
    twice_bad.write_text(
        text.replace(">9434765870<", ">9434765871<").replace('code="EMO"', 'code="99Z"')
    )
    assert main(["validate", str(twice_bad)]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_missing_file_is_named(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = files / "nope.xml"
    assert main(["validate", str(missing)]) == 1
    assert capsys.readouterr().err.strip() == f"{missing}: cannot read: No such file or directory"


def test_unsafe_file_is_refused_with_its_name(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    xxe = files / "xxe.xml"
    shutil.copy(EXAMPLES / "invalid" / "xxe-file-entity.xml", xxe)
    assert main(["validate", str(xxe)]) == 1
    assert capsys.readouterr().err.strip() == f"{xxe}:1: DOCTYPE declarations are not allowed"


def test_every_shipped_valid_example_passes_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    paths = sorted(str(p) for p in (EXAMPLES / "valid").glob("*.xml"))
    assert main(["validate", *paths]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(paths)


def test_validate_needs_at_least_one_file() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2
