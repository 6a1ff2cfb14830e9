"""docker-compose.yml: resolved by Compose itself (`docker compose config`, or Debian's `docker-compose config`;
neither needs a daemon), and checked as an operator would read it: the services, their healthchecks and restart
policies, ports on 127.0.0.1 only, and no MOJAFLOW_* variable that is not one of our settings; the `observability`
profile's Prometheus and Grafana with the files they load (deploy/), scraping what the API and workers serve."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mojaflow.settings import Settings
from mojaflow.temporal import search_attribute_flags
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
KEYS = {name: "k1:AAAA" for name in ("MOJAFLOW_PAYLOAD_KEYS", "MOJAFLOW_SECRETS_KEYS", "MOJAFLOW_PARTY_HASH_KEYS")}
OBSERVABILITY = {"prometheus", "grafana"}  # profile `observability` only
MOJAFLOW = {"postgres", "temporal", "temporal-ui", "api", "worker", "sdk-simulator", "cbs-simulator"}
LONG_RUNNING = MOJAFLOW | OBSERVABILITY
ANSWERING = LONG_RUNNING - {"temporal-ui", "worker"}  # a worker answers before it polls; the UI image: no probe


def _compose() -> list[str] | None:
    """`docker compose` (the plugin) if it works here, else `docker-compose` (Debian's package), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _config(extra_env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    command = _compose()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra_env}  # no MOJAFLOW_* leaks in
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), *options, "config"], env=env, capture_output=True, text=True, timeout=60
    )


def _services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(document["services"])


def _check(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == LONG_RUNNING | {"temporal-setup"}
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "unless-stopped", f"{name}: no restart policy"
    assert services["temporal-setup"].get("restart") in ("no", None)  # a one-shot, never restarted
    for name in ANSWERING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    for name in ("api", "worker"):
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == "service_healthy"
        assert needs["temporal-setup"]["condition"] == "service_completed_successfully"
    settings = {f"MOJAFLOW_{field.upper()}" for field in Settings.model_fields}
    for name, service in services.items():
        environment = service.get("environment") or {}
        names = environment if isinstance(environment, dict) else [item.split("=", 1)[0] for item in environment]
        unknown = sorted(n for n in names if n.startswith("MOJAFLOW_") and n not in settings)
        assert not unknown, f"{name} sets variables that are no setting: {unknown}"
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert published.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    assert "ports" not in services["postgres"]
    for name, service in services.items():  # a plain `up` starts what it always did
        assert service.get("profiles") == (["observability"] if name in OBSERVABILITY else None), name
    _check_observability(services)


def _mounted(service: dict[str, Any], target: str) -> Path:
    """The file of this repository a service mounts at `target` (short or long volume syntax)."""
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":") if isinstance(volume, str) else (volume["source"], "", volume["target"])
        if rest.split(":")[0] == target:
            path = (ROOT / source).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{source} is not a file of this repository"
            return path
    raise AssertionError(f"nothing mounted at {target}")


def _check_observability(services: dict[str, dict[str, Any]]) -> None:
    """Prometheus scrapes the API with the operator key's secret and each worker on the port it serves; Grafana loads
    the dashboard and its data source; the dashboard's metrics exist (checked by tests/test_metrics.py)."""
    worker = services["worker"]["environment"]
    assert worker["MOJAFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"  # inside compose's network; not published
    assert "ports" not in services["worker"]
    prometheus = services["prometheus"]
    scrape = yaml.safe_load(_mounted(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    api = jobs["mojaflow-api"]
    assert api["static_configs"] == [{"targets": ["api:3004"]}] and api["metrics_path"] == "/metrics"
    secret = [s if isinstance(s, str) else s["source"] for s in prometheus["secrets"]]
    assert api["authorization"]["credentials_file"] == f"/run/secrets/{secret[0]}"
    workers = jobs["mojaflow-worker"]["dns_sd_configs"]
    assert workers == [{"names": ["worker"], "type": "A", "port": int(worker["MOJAFLOW_WORKER_METRICS_PORT"]),
                        "refresh_interval": "30s"}]  # fmt: skip
    grafana = services["grafana"]
    dashboard = json.loads(_mounted(grafana, "/var/lib/grafana/dashboards/mojaflow.json").read_text())
    provisioning = _mounted(grafana, "/etc/grafana/provisioning")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert sources[0]["url"] == "http://prometheus:9090"
    used = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])}
    assert used == {sources[0]["uid"]}


def test_the_file_as_written() -> None:
    _check(_services(yaml.safe_load(COMPOSE_FILE.read_text())))  # anchors and `<<` merges resolved by YAML itself


def test_compose_resolves_it_with_the_key_rings_set() -> None:
    resolved = _config(KEYS, "--profile", "observability")

    assert resolved.returncode == 0, resolved.stderr
    services = _services(yaml.safe_load(resolved.stdout))
    _check(services)
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["MOJAFLOW_PAYLOAD_KEYS"] == "k1:AAAA"
        assert environment["MOJAFLOW_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert environment["MOJAFLOW_DATABASE_URL"].startswith("postgresql+asyncpg://")


def test_compose_refuses_to_start_without_the_key_rings() -> None:
    refused = _config({})

    assert refused.returncode != 0
    assert "set MOJAFLOW_PAYLOAD_KEYS" in refused.stderr or "set MOJAFLOW_SECRETS_KEYS" in refused.stderr


def test_temporal_gets_our_search_attributes() -> None:
    """The compose cluster's Temporal must know every search attribute the workflows upsert, with its type (an
    unknown one fails the workflow task)."""
    services = _services(yaml.safe_load(COMPOSE_FILE.read_text()))
    setup = " ".join(services["temporal-setup"]["command"])
    created: dict[str, str] = {}
    for names, kind in re.findall(
        r"for name in ([^;]*); do\s+temporal operator search-attribute create [^;]*--type (\w+)", setup
    ):
        created |= dict.fromkeys(names.split(), kind)
    created |= dict(re.findall(r"--name (\w+) --type (\w+)", setup))
    assert created == dict(flag.split("=") for flag in search_attribute_flags()[1::2])
