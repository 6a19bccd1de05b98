"""The deployment and monitoring files are well-formed, agree with each other and with the code.

docker-compose.yml references only files that exist and commands the CLI
has; Prometheus accepts the scrape config and the alert rules, whose unit
tests pass; every PromQL expression of the dashboard parses; every gateway
metric the alerts and the dashboard read is one the gateway defines; the
systemd units are hardened.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = OPS / "grafana" / "dashboards" / "mash-gateway.json"
GATEWAY_SERVICES = ("router", "quarantine", "intake", "adapter-police", "adapter-health", "console")
METRIC_NAME = re.compile(r"\bmash_gateway_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def commands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return set(actions[0].choices or {})


def test_compose_file_is_well_formed_and_runs_every_service() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    for name in ("rabbitmq", *GATEWAY_SERVICES, "prometheus", "grafana", "setup", "demo"):
        assert name in services, f"docker-compose.yml has no service {name!r}"
    for name, service in services.items():
        assert ("build" in service) != ("image" in service), f"{name}: build or image, not both"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency!r}"
    known = commands()
    for name in GATEWAY_SERVICES:
        command = services[name]["command"]
        assert command[:2] == ["--config", "/area/gateway.toml"], name
        assert command[2] in known, f"{name} runs unknown command {command[2]!r}"
        build_parser().parse_args(command)  # exits (fails the test) on an unknown option
        health = services[name]["healthcheck"]["test"]
        assert health[:3] == ["CMD", "mash-gateway", "health"], name
        build_parser().parse_args(health[2:])
    asked = [a for a in services["console"]["command"] if a.endswith("/readyz")]
    for service in asked:  # the console's overview asks each service where compose runs it
        name, _, url = service.partition("=")
        assert name in services and url == f"http://{name}:9464/readyz", service


def test_compose_references_only_files_that_exist() -> None:
    compose = load_yaml(COMPOSE)
    named_volumes = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        if "build" in service:
            context = ROOT / str(service["build"])
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source!r} is not declared"


def test_dockerfile_copies_only_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    checked = promtool("check", "config", "ops/prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scrape = load_yaml(OPS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert {"mash-router", "mash-intake", "mash-adapters", "rabbitmq"} <= set(jobs)
    services = set(load_yaml(COMPOSE)["services"])
    for job in jobs.values():
        for target in job["static_configs"][0]["targets"]:
            assert target.split(":")[0] in services, f"{job['job_name']}: {target} is no service"


def test_alert_unit_tests_pass() -> None:
    tested = promtool("test", "rules", "alerts.test.yml", cwd=OPS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_alerts_cover_what_operators_must_hear_about() -> None:
    rules = load_yaml(OPS / "alerts.yml")["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {
        "MashDeadlineBreached",
        "MashQuarantineGrowing",
        "MashInboxWithoutConsumer",
        "MashInboxBacklog",
        "MashKeyExpiringSoon",
        "MashCertificateExpiringSoon",
        "MashIntakeRejectRate",
    } <= names
    readme = (ROOT / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in readme, f"README.md's Operations section does not explain {name}"


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool has no query checker, so each panel query becomes a recording rule to check."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(expressions) >= 15
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("flow", "latency", "deadlines", "rejects", "queues"):
        assert topic in titles, f"the dashboard has no {topic} section"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    provisioning = OPS / "grafana" / "provisioning"
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (provider,) = load_yaml(provisioning / "dashboards" / "mash-gateway.yml")["providers"]
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if "datasource" in panel:
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]


def test_alerts_and_dashboard_read_only_metrics_the_gateway_defines() -> None:
    defined = set(METRIC_NAME.findall((ROOT / "gateway" / "services" / "metrics.py").read_text()))
    readable = defined | {name + suffix for name in defined for suffix in HISTOGRAM_SUFFIXES}
    for path in (OPS / "alerts.yml", DASHBOARD):
        used = set(METRIC_NAME.findall(path.read_text()))
        assert used, path
        assert used <= readable, f"{path.name} reads undefined metrics {sorted(used - readable)}"


@pytest.mark.parametrize("unit", sorted((OPS / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_are_hardened_and_run_known_commands(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["User"] == "mash-gateway"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["PrivateTmp"] == "yes"
    assert "/var/lib/mash-gateway/state" in settings["ReadWritePaths"]
    command = settings["ExecStart"].split()
    assert command[0].endswith("/mash-gateway")
    assert command[1] in commands()
    ready = settings["ExecStartPost"].split()  # started once its /readyz says so
    assert ready[1:4] == ["health", "--wait", "60"] and ready[4].endswith("/readyz")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the static checks above still hold; systemd-analyze adds the full parse
    copy = tmp_path / unit.name.replace("@.", "@police.")
    copy.write_text(text)
    verified = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (verified.stdout + verified.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert problems == []
