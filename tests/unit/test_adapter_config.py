"""``[[adapters]]`` in gateway.toml: parsed into values, every mistake named by its key path."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from adapters.profile import load_profile, profile_dir
from gateway.config.adapter_config import FileDropSettings, HttpSettings
from gateway.config.area_config import AreaConfig, ConfigError, parse_config
from gateway.demo.area import demo_config

pytestmark = pytest.mark.unit

DEMO = demo_config("amqp://guest:guest@127.0.0.1:5672/x", date(2026, 11, 23))
BASE = DEMO[: DEMO.index("\n[[adapters]]")]  # the demo area without its adapters
PATH = Path("/areas/demo/gateway.toml")

FILEDROP = """
[[adapters]]
agency = "police"
profile = "police"
recipients = ["hub"]
transport = "filedrop"
[adapters.filedrop]
root = "agency-systems/police"
"""


def parsed(extra: str) -> AreaConfig:
    return parse_config(BASE + extra, PATH)


def test_filedrop_and_http_adapters_parse() -> None:
    config = parsed(
        FILEDROP
        + """
[[adapters]]
agency = "csc"
profile = "/opt/profiles/csc"
recipients = ["hub"]
transport = "http"
[adapters.http]
listen = "127.0.0.1:8441"
webhook = "https://csc.example/mash"
attempts = 3
"""
    )
    police, csc = config.adapters
    assert police.filedrop == FileDropSettings(Path("/areas/demo/agency-systems/police"), 1.0)
    assert police.filedrop.archive_days == 30  # sent files are not kept for ever
    assert police.recipients == ("hub",)
    assert csc.http == HttpSettings("127.0.0.1", 8441, "https://csc.example/mash", attempts=3)


def test_no_adapters_is_fine() -> None:
    assert parsed("").adapters == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('agency = "police"', 'agency = "polce"'), r"adapters\[0\].agency: 'polce' is not one"),
        (
            ('agency = "police"', 'agency = "gateway"'),
            r"adapters\[0\].agency: 'gateway' is not one",
        ),
        (('recipients = ["hub"]', 'recipients = ["hubb"]'), r"adapters\[0\].recipients: 'hubb'"),
        (('recipients = ["hub"]', "recipients = []"), r"adapters\[0\].recipients: must be"),
        (
            ('transport = "filedrop"', 'transport = "ftp"'),
            r"adapters\[0\].transport: 'ftp' must be",
        ),
        (('transport = "filedrop"', 'transport = "http"'), r"adapters\[0\].http: missing table"),
        (('root = "agency', 'rot = "agency'), r"adapters\[0\].filedrop.rot: unknown key"),
        (('profile = "police"', ""), r"adapters\[0\].profile: missing"),
        (
            ('root = "agency-systems/police"', 'root = "x"\narchive_days = 0'),
            r"adapters\[0\].filedrop.archive_days: must be a positive number",
        ),
    ],
)
def test_mistakes_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parsed(FILEDROP.replace(*change))


def test_one_adapter_per_agency() -> None:
    with pytest.raises(ConfigError, match=r"adapters\[1\].agency: 'police' has two adapters"):
        parsed(FILEDROP + FILEDROP)


def test_http_listen_address_is_checked() -> None:
    http = FILEDROP.replace('transport = "filedrop"', 'transport = "http"').replace(
        '[adapters.filedrop]\nroot = "agency-systems/police"', '[adapters.http]\nlisten = "8441"'
    )
    with pytest.raises(ConfigError, match=r"adapters\[0\].http.listen: '8441' must be HOST:PORT"):
        parsed(http)


def test_the_demo_area_declares_five_adapters_whose_profiles_load() -> None:
    config = parse_config(DEMO, PATH)
    assert [(a.agency, a.transport) for a in config.adapters] == [
        ("police", "filedrop"),
        ("education", "filedrop"),
        ("csc", "http"),
        ("probation", "http"),
        ("health", "mesh"),
    ]
    for adapter in config.adapters:
        profile = load_profile(profile_dir(adapter.profile, config.base_dir))
        assert profile.name == adapter.agency
    (health,) = [a.mesh for a in config.adapters if a.mesh is not None]
    assert health.workflow_for("InformationRequest") == "MASH_INFO_REQUEST"
    assert health.workflow_for("DeliveryReceipt") == "MASH_GATEWAY"


HTTP = FILEDROP.replace('transport = "filedrop"', 'transport = "http"').replace(
    '[adapters.filedrop]\nroot = "agency-systems/police"',
    '[adapters.http]\nlisten = "127.0.0.1:8441"\nwebhook = "http://127.0.0.1:9441/mash"',
)


def test_plain_http_only_on_loopback() -> None:
    assert parsed(HTTP).adapters[0].http is not None
    exposed = HTTP.replace('listen = "127.0.0.1:8441"', 'listen = "0.0.0.0:8441"')
    with pytest.raises(ConfigError, match=r"http.listen: plain HTTP only on a loopback address"):
        parsed(exposed)
    with_tls = exposed.replace(
        "[adapters.http]\n", '[adapters.http]\ntls_cert = "tls/csc.crt"\ntls_key = "tls/csc.key"\n'
    )
    (adapter,) = parsed(with_tls).adapters
    assert adapter.http is not None
    assert adapter.http.tls_cert == Path("/areas/demo/tls/csc.crt")
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        parsed(with_tls.replace('tls_key = "tls/csc.key"\n', ""))


def test_slow_client_timeouts_have_defaults_and_can_be_set() -> None:
    (default,) = parsed(HTTP).adapters
    assert default.http is not None
    assert (default.http.idle_seconds, default.http.body_seconds) == (15.0, 30.0)
    (tight,) = parsed(HTTP + "idle_seconds = 5\nbody_seconds = 10\n").adapters
    assert tight.http is not None
    assert (tight.http.idle_seconds, tight.http.body_seconds) == (5.0, 10.0)
    with pytest.raises(ConfigError, match=r"adapters\[0\].http.body_seconds: must be a positive"):
        parsed(HTTP + "body_seconds = 0\n")
    with pytest.raises(ConfigError, match=r"adapters\[0\].http.idle_seconds: must be a positive"):
        parsed(HTTP + 'idle_seconds = "forever"\n')


def test_a_webhook_off_this_machine_must_use_https() -> None:
    remote = HTTP.replace("http://127.0.0.1:9441/mash", "http://csc.example/mash")
    with pytest.raises(ConfigError, match=r"http.webhook: must be https:// unless"):
        parsed(remote)
    assert parsed(remote.replace("http://csc", "https://csc")).adapters


MESH = FILEDROP.replace('transport = "filedrop"', 'transport = "mesh"').replace(
    '[adapters.filedrop]\nroot = "agency-systems/police"',
    "[adapters.mesh]\n"
    'url = "https://msg.intspineservices.nhs.uk"\nmailbox = "X26ABC1"\nrecipient = "X26ABC2"\n'
    'workflow_id = "MASH_GATEWAY"\nroot = "agency-systems/police"\n'
    'cert = "keys/private/mesh/police.crt"\nkey = "keys/private/mesh/police.key"',
)


def test_mesh_off_this_machine_needs_https_and_a_client_certificate() -> None:
    (adapter,) = parsed(MESH).adapters
    assert adapter.mesh is not None
    assert adapter.mesh.cert == Path("/areas/demo/keys/private/mesh/police.crt")
    plain = MESH.replace("https://msg", "http://msg")
    with pytest.raises(ConfigError, match=r"adapters\[0\].mesh.url: must be https:// unless"):
        parsed(plain)
    anonymous = MESH.replace('cert = "keys/private/mesh/police.crt"\n', "").replace(
        'key = "keys/private/mesh/police.key"', ""
    )
    with pytest.raises(
        ConfigError,
        match=r"adapters\[0\].mesh.cert: missing: MESH at msg.intspineservices.nhs.uk needs",
    ):
        parsed(anonymous)
    for bad in ("ftp://msg.example", "https://"):
        with pytest.raises(ConfigError, match=r"adapters\[0\].mesh.url: must be an https:// URL"):
            parsed(MESH.replace("https://msg.intspineservices.nhs.uk", bad))


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8700", "http://localhost:8700", "http://[::1]:8700"]
)
def test_a_mesh_sandbox_on_this_machine_may_be_plain_and_anonymous(url: str) -> None:
    sandbox = MESH.replace("https://msg.intspineservices.nhs.uk", url)
    sandbox = sandbox.replace('cert = "keys/private/mesh/police.crt"\n', "")
    sandbox = sandbox.replace('key = "keys/private/mesh/police.key"', "")
    (adapter,) = parsed(sandbox).adapters
    assert adapter.mesh is not None and adapter.mesh.cert is None
