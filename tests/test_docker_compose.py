"""docker-compose.yml: resolved by Compose itself (`docker compose config`, or Debian's `docker-compose config`;
neither needs a daemon), and checked as an operator would read it: the services, their healthchecks and restart
policies, ports on 127.0.0.1 only, and no MOJAFLOW_* variable that is not one of our settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from mojaflow.settings import Settings
from mojaflow.temporal import DEV_SERVER_DYNAMIC_CONFIG, search_attribute_flags
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
KEYS = {name: "k1:AAAA" for name in ("MOJAFLOW_PAYLOAD_KEYS", "MOJAFLOW_SECRETS_KEYS", "MOJAFLOW_PARTY_HASH_KEYS")}
LONG_RUNNING = {"postgres", "temporal", "temporal-ui", "api", "worker", "sdk-simulator", "cbs-simulator"}
ANSWERING = LONG_RUNNING - {"temporal-ui", "worker"}  # a worker serves nothing to probe yet; the UI image: no probe


def _compose() -> list[str] | None:
    """`docker compose` (the plugin) if it works here, else `docker-compose` (Debian's package), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _config(extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = _compose()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra_env}  # no MOJAFLOW_* leaks in
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config"], env=env, capture_output=True, text=True, timeout=60
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


def test_the_file_as_written() -> None:
    _check(_services(yaml.safe_load(COMPOSE_FILE.read_text())))  # anchors and `<<` merges resolved by YAML itself


def test_compose_resolves_it_with_the_key_rings_set() -> None:
    resolved = _config(KEYS)

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


def test_temporal_gets_our_search_attributes_and_dynamic_config() -> None:
    """The compose cluster's Temporal must know every search attribute the workflows upsert (an unknown one fails
    the workflow task) and read its transfer queue as `make run`'s dev server does."""
    services = _services(yaml.safe_load(COMPOSE_FILE.read_text()))
    setup = " ".join(services["temporal-setup"]["command"])
    created: dict[str, str] = {}
    for names, kind in re.findall(
        r"for name in ([^;]*); do\s+temporal operator search-attribute create [^;]*--type (\w+)", setup
    ):
        created |= dict.fromkeys(names.split(), kind)
    created |= dict(re.findall(r"--name (\w+) --type (\w+)", setup))
    assert created == dict(flag.split("=") for flag in search_attribute_flags()[1::2])

    mounted = services["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    source, target = next(v.split(":")[:2] for v in services["temporal"]["volumes"] if v.split(":")[1] == mounted)
    dynamic_config = yaml.safe_load((ROOT / source).read_text())
    assert {key: values[0]["value"] for key, values in dynamic_config.items()} == DEV_SERVER_DYNAMIC_CONFIG
    assert target == mounted
