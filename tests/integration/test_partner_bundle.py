"""A partner agency's host holds only its own: bundle export and import, key registration.

The exchange test runs police's inbox in its own mount namespace with the
hub's area folder hidden under an empty tmpfs, so the police process cannot
read the hub's config, keys or store, and still receives and receipts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.broker.vhost import BrokerAdmin
from gateway.cli import main
from gateway.config.area_config import AreaConfig, load_config
from gateway.core.resources import schemas_dir
from gateway.core.vocabulary import SYSTEM_MESSAGE_TYPES
from gateway.services.edge import Delivered, Edge, Submission
from gateway.services.partner_bundle import BundleError, import_bundle
from gateway.services.router import run_router
from gateway.store.sqlite import SqliteStore
from tests.integration.logins_harness import area_with_logins

pytestmark = pytest.mark.integration

REQUEST = (schemas_dir() / "examples" / "valid" / "information-request.xml").read_bytes()


@pytest.fixture(scope="module")
def issued_area(
    broker_admin: BrokerAdmin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AreaConfig]:
    with area_with_logins(broker_admin, tmp_path_factory.mktemp("partner") / "hub") as config:
        yield config


def gpg_agent_sockets(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if stat.S_ISSOCK(os.lstat(os.path.join(folder, n)).st_mode)]


@pytest.fixture
def area(issued_area: AreaConfig, tmp_path: Path) -> AreaConfig:
    """A copy of the hub's folder for one test (tests move keys out of it)."""
    shutil.copytree(
        issued_area.path.parent, tmp_path / "hub", symlinks=True, ignore=gpg_agent_sockets
    )
    return load_config(str(tmp_path / "hub" / "gateway.toml"))


def private_keys_in(folder: Path) -> list[tuple[Path, bytes]]:
    """Every private key in any file below ``folder``, as (file, raw public half)."""
    found = []
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            continue
        public = key.public_key()
        try:  # Ed25519 and X25519 keys by their raw public half, as the registry holds them
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        except ValueError:  # TLS and DKIM keys: never an agency key
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        found.append((path, raw))
    return found


def export(area: AreaConfig, out: Path, *extra: str) -> None:
    assert (
        main(["--config", str(area.path), "partner", "export", "police", "-o", str(out), *extra])
        == 0
    )


def test_a_partner_host_holds_its_own_keys_and_login_and_no_one_elses(
    area: AreaConfig, tmp_path: Path
) -> None:
    # Police's own keys; the intake's key for police is the intake's and stays at the hub.
    police_keys = {r.raw: r.key_id for r in area.registry.keys_of("police") if not r.intake}
    export(area, tmp_path / "bundle", "--move")
    host = tmp_path / "police"
    assert main(["partner", "import", str(tmp_path / "bundle"), "--to", str(host)]) == 0
    held = private_keys_in(host)
    assert held, "the bundle carries police's private keys"
    assert {police_keys.get(raw) for _, raw in held} <= set(police_keys.values())
    assert sorted(p.name for p in (host / "keys" / "private" / "broker").iterdir()) == [
        "police.password"
    ]
    for path in host.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({mode:04o})"
    config_text = (host / "gateway.toml").read_text()
    assert "guest" not in config_text and "[intake" not in config_text
    # The hub kept nothing of police's secrets once moved.
    assert not [p for p, raw in private_keys_in(area.path.parent) if raw in police_keys]
    assert not (area.private_keys_dir / "broker" / "police.password").exists()


def test_import_refuses_a_bundle_changed_after_export(area: AreaConfig, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    export(area, bundle)
    hub_key = next(area.private_keys_dir.glob("hub.sign.*.key"))
    smuggled = bundle / "keys" / "private" / hub_key.name
    shutil.copy(hub_key, smuggled)
    with pytest.raises(BundleError, match=f"{smuggled.name}: not in the signed manifest"):
        import_bundle(bundle, tmp_path / "police")
    smuggled.unlink()

    config = bundle / "gateway.toml"
    config.write_text(config.read_text() + "\n# edited in transit\n")
    with pytest.raises(BundleError, match=r"gateway\.toml: differs from the signed manifest"):
        import_bundle(bundle, tmp_path / "police")
    assert not (tmp_path / "police").exists()


def test_a_partner_that_generates_its_own_keys_joins_by_a_confirmed_registration(
    area: AreaConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, host = tmp_path / "bundle", tmp_path / "police"
    export(area, bundle, "--no-keys")
    assert not private_keys_in(bundle)
    assert main(["partner", "import", str(bundle), "--to", str(host)]) == 0
    partner_config = str(host / "gateway.toml")
    assert main(["--config", partner_config, "keys", "rotate", "--agency", "police"]) == 0
    request = tmp_path / "police-keys.json"
    capsys.readouterr()
    assert main(["--config", partner_config, "partner", "request", "--agency", "police",
                 "-o", str(request)]) == 0  # fmt: skip
    fingerprint = capsys.readouterr().out.split("fingerprint: ")[1].split(" (")[0]

    hub = ["--config", str(area.path), "partner", "register", str(request)]
    assert main([*hub, "--accept", "0000 1111"]) == 1  # a wrong fingerprint adds nothing
    assert "confirm it with police by phone" in capsys.readouterr().err
    assert main([*hub, "--accept", fingerprint]) == 0
    new_keys = {r.key_id for r in load_config(partner_config).registry.keys_of("police")}
    assert new_keys <= set(load_config(str(area.path)).registry.keys)
    assert main([*hub, "--accept", fingerprint]) == 0  # again: nothing new, nothing duplicated


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace hiding the hub needs root")
async def test_the_police_host_sees_only_its_folder_and_a_full_exchange_works(
    area: AreaConfig, tmp_path: Path
) -> None:
    police_host, received_dir = tmp_path / "police", tmp_path / "police-inbox"
    export(area, tmp_path / "bundle", "--move")
    import_bundle(tmp_path / "bundle", police_host)
    shutil.rmtree(tmp_path / "bundle")
    hub_folder = area.path.parent
    inbox_cmd = [
        sys.executable, "-m", "gateway", "--config", str(police_host / "gateway.toml"),
        "inbox", "--as", "police", "--out", str(received_dir), "--idle", "8",
    ]  # fmt: skip
    hidden = f'mount -t tmpfs none {hub_folder} && test -z "$(ls -A {hub_folder})" && exec "$@"'
    store = SqliteStore(str(hub_folder / "state" / "router.db"))
    await store.open()
    stop, ready = asyncio.Event(), asyncio.Event()
    router = asyncio.create_task(run_router(area, store, stop, ready))
    hub_received: list[Delivered] = []

    async def hub_system(delivered: Delivered) -> None:
        hub_received.append(delivered)

    try:
        await asyncio.wait_for(ready.wait(), 15)
        async with Edge(area, "hub", store) as hub:
            await hub.consume(hub_system)
            submitted = await hub.submit(Submission(REQUEST, ("police",)))
            police = await asyncio.create_subprocess_exec(
                "unshare", "--mount", "--propagation", "private",
                "sh", "-c", hidden, "sh", *inbox_cmd,
                cwd=police_host, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(police.communicate(), 90)
            assert police.returncode == 0, output.decode()
            for _ in range(100):
                if hub_received:
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await router
        await store.close()
    assert [p.name for p in received_dir.iterdir()] == [f"{submitted.message_id}.xml"]
    receipts = [d.header.fields for d in hub_received]
    assert [(f.message_type, f.in_reply_to) for f in receipts] == [
        ("DeliveryReceipt", submitted.message_id)
    ]
    assert receipts[0].message_type in SYSTEM_MESSAGE_TYPES
