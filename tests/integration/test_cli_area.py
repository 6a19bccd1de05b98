"""init, keys and seal/open through the real CLI, on real files."""

import stat
from pathlib import Path

import gnupg
import pytest

from gateway.cli import main
from gateway.config.area_config import load_config
from gateway.core.registry import KeyUse
from gateway.core.resources import schemas_dir
from gateway.demo import mail as demo_mail
from gateway.intake import devkeys
from gateway.intake.pgp import usable_home

pytestmark = pytest.mark.integration

REFERRAL = schemas_dir() / "examples" / "valid" / "referral.xml"


@pytest.fixture
def area(tmp_path: Path) -> Path:
    directory = tmp_path / "area"
    assert main(["init", str(directory)]) == 0
    return directory


def fingerprints(home: Path, secret: bool = False) -> set[str]:
    """The keys in a GnuPG home; its agent is stopped afterwards, as init leaves it."""
    try:
        keys = gnupg.GPG(gnupghome=str(usable_home(home))).list_keys(secret=secret)
        return {str(k["fingerprint"]) for k in keys}
    finally:
        devkeys.stop_agent(home)


def cli(area: Path, *args: str) -> int:
    return main(["--config", str(area / "gateway.toml"), *args])


def test_init_writes_private_keys_0600_and_a_loadable_registry(area: Path) -> None:
    config = load_config(str(area / "gateway.toml"))
    private = sorted((area / "keys" / "private").glob("*.key"))
    assert len(private) == 19 == len(config.registry.keys)
    # Besides every agency's pair, the intake's signing key for each agency whose mail it takes.
    assert config.intake is not None
    intake_keys = {k.agency for k in config.registry.keys.values() if k.intake}
    assert intake_keys == {rule.agency for rule in config.intake.domains}
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((area / "keys" / "private").stat().st_mode) & 0o077 == 0


def test_init_pins_the_housing_officer_and_introduces_officer_and_intake(area: Path) -> None:
    """Housing is e-mail-only: its officer's key is pinned and each side holds the other's."""
    config = load_config(str(area / "gateway.toml"))
    assert config.intake is not None
    rule = config.intake.rule_for("housing.demo.example")
    assert rule is not None and rule.inbox and len(rule.staff) == 1
    officer_home = area / demo_mail.OFFICER_HOME
    assert stat.S_IMODE(officer_home.stat().st_mode) == 0o700
    pinned = rule.staff[0].fingerprint
    assert fingerprints(officer_home, secret=True) == {pinned}
    gateway_secrets = fingerprints(config.intake.gnupg_home, secret=True)
    assert pinned in fingerprints(config.intake.gnupg_home)
    assert pinned not in gateway_secrets  # the gateway holds only the officer's public key
    assert gateway_secrets <= fingerprints(officer_home)


def test_init_force_replaces_keys_and_the_old_state(area: Path) -> None:
    old_keys = {p.name for p in (area / "keys" / "private").glob("*.key")}
    (area / "state" / "audit.jsonl").write_text("{}\n")
    (area / "state" / "gateway.db").write_bytes(b"old")
    assert main(["init", str(area), "--force"]) == 0
    assert not old_keys & {p.name for p in (area / "keys" / "private").glob("*.key")}
    # A new officer key, not a second one beside the old.
    assert len(fingerprints(area / demo_mail.OFFICER_HOME, secret=True)) == 1
    assert list((area / "state").iterdir()) == []


def test_init_refuses_to_overwrite_an_area(area: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(area)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_seal_then_open_round_trip(area: Path, tmp_path: Path) -> None:
    sealed, opened = tmp_path / "referral.env", tmp_path / "opened.xml"
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub,csc", str(REFERRAL), "-o", str(sealed))
        == 0
    )
    assert REFERRAL.read_bytes() not in sealed.read_bytes()
    assert cli(area, "open", "--as", "csc", str(sealed), "-o", str(opened)) == 0
    assert opened.read_bytes() == REFERRAL.read_bytes()


def test_non_recipient_cannot_open_and_nothing_is_written(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed, opened = tmp_path / "referral.env", tmp_path / "opened.xml"
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub", str(REFERRAL), "-o", str(sealed)) == 0
    )
    assert cli(area, "open", "--as", "health", str(sealed), "-o", str(opened)) == 1
    assert "recipient" in capsys.readouterr().err
    assert not opened.exists()
    assert list(tmp_path.glob(".opened.xml.*")) == []


def test_tampered_file_fails_open_naming_the_check(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed, opened = tmp_path / "referral.env", tmp_path / "opened.xml"
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub", str(REFERRAL), "-o", str(sealed)) == 0
    )
    data = bytearray(sealed.read_bytes())
    data[-10] ^= 0x01
    sealed.write_bytes(bytes(data))
    assert cli(area, "open", "--as", "hub", str(sealed), "-o", str(opened)) == 1
    err = capsys.readouterr().err
    assert "mash-gateway open:" in err
    assert not opened.exists()


def test_seal_refuses_schema_invalid_payload(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text(REFERRAL.read_text().replace("9434765870", "9434765871"))
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub", str(bad), "-o", str(tmp_path / "x"))
        == 1
    )
    err = capsys.readouterr().err
    assert "bad.xml:" in err and "9434765871" in err
    assert not (tmp_path / "x").exists()


def test_revoked_signing_key_stops_verifying(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = tmp_path / "referral.env"
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub", str(REFERRAL), "-o", str(sealed)) == 0
    )
    config = load_config(str(area / "gateway.toml"))
    police_sign = next(
        k for k in config.registry.keys_of("police") if k.use.value == "sign" and not k.intake
    )
    assert cli(area, "keys", "revoke", police_sign.key_id, "--reason", "laptop stolen") == 0
    assert cli(area, "open", "--as", "hub", str(sealed), "-o", str(tmp_path / "o.xml")) == 1
    assert "revoked" in capsys.readouterr().err


def test_rotation_keeps_old_messages_verifying_and_seals_with_the_new_key(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tmp_path / "before.env"
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub", str(REFERRAL), "-o", str(before)) == 0
    )
    assert cli(area, "keys", "rotate", "--agency", "police") == 0
    assert cli(area, "keys", "rotate", "--agency", "hub", "--use", "encrypt") == 0
    after = tmp_path / "after.env"
    assert (
        cli(area, "seal", "--from", "police", "--to", "hub", str(REFERRAL), "-o", str(after)) == 0
    )
    capsys.readouterr()
    assert cli(area, "open", "--as", "hub", str(before), "-o", str(tmp_path / "b.xml")) == 0
    assert cli(area, "open", "--as", "hub", str(after), "-o", str(tmp_path / "a.xml")) == 0
    config = load_config(str(area / "gateway.toml"))
    assert len(config.registry.keys_of("police")) == 5  # 4 of its edge's, 1 of the intake's
    old_sign, new_sign = [
        k.key_id
        for k in config.registry.keys.values()
        if k.agency == "police" and k.use is KeyUse.SIGN and not k.intake
    ]
    assert new_sign.encode() in after.read_bytes() and old_sign.encode() not in after.read_bytes()
    assert old_sign.encode() in before.read_bytes()
    assert cli(area, "keys", "list", "--agency", "police") == 0
    listing = capsys.readouterr().out
    assert "valid (rotated)" in listing and "current" in listing


def test_private_key_readable_by_others_is_refused(
    area: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in (area / "keys" / "private").glob("police.sign.*.key"):
        key.chmod(0o644)
    assert (
        cli(
            area,
            "seal",
            "--from",
            "police",
            "--to",
            "hub",
            str(REFERRAL),
            "-o",
            str(tmp_path / "x"),
        )
        == 1
    )
    assert "readable by group or others" in capsys.readouterr().err


def test_keys_generate_intake_adds_a_signing_key_the_edge_never_picks(
    area: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(area, "keys", "generate", "--agency", "probation", "--intake") == 0
    assert "(intake sign)" in capsys.readouterr().out
    config = load_config(str(area / "gateway.toml"))
    [intake_key] = [k for k in config.registry.keys_of("probation") if k.intake]
    assert intake_key.use is KeyUse.SIGN
    assert (area / "keys" / "private" / f"{intake_key.key_id}.key").exists()
    now = intake_key.not_before
    edge_key = config.registry.current_key("probation", KeyUse.SIGN, now)
    assert edge_key.key_id != intake_key.key_id
    assert config.registry.current_key("probation", KeyUse.SIGN, now, intake=True) == intake_key
    assert (
        cli(area, "keys", "generate", "--agency", "probation", "--intake", "--use", "encrypt") == 1
    )
    assert "--intake keys only sign" in capsys.readouterr().err
