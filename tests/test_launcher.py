"""`make run`'s launcher (`python -m mojaflow.launcher`): refuses taken ports, stops within 10 s, and a second
run on the same data dir finishes what the first left in flight; its webhook receiver, allowed by default, gets the
transfer's events. It supervises: a killed worker or API process comes back, a killed dev server stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mojaflow.launcher import _child_env, _components
from mojaflow.settings import Settings
from mojaflow.webhook_models import EVENT_TYPE
from tests.conftest import ROOT
from tests.support.launcher import announced_pids, launch, launcher_env, wait_healthy
from tests.support.transfers import money_movement_headers, transfer_body


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    return True


def _until(condition: Callable[[], bool], what: str, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}, not within {timeout_s} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def _read(api: str, transfer_id: str, auth: dict[str, str]) -> dict[str, object]:
    return dict(httpx.get(f"{api}/transfers/{transfer_id}", headers=auth, timeout=10).json())


def _wait_for_event(receiver: str, transfer_id: str, state: str, timeout_s: float = 60) -> None:
    """Poll the webhook receiver until the event of `transfer_id` entering `state` arrived, answered 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = httpx.get(f"{receiver}/_sim/events", params={"transferId": transfer_id}, timeout=10).json()["events"]
        if any(e["body"]["data"]["currentState"] == state and e["status"] == 200 for e in got):
            return
        assert time.monotonic() < deadline, f"no {state} event at the receiver: {[e['body'] for e in got]}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    process.wait(timeout=15)
    return time.monotonic() - started


def test_make_run_logs_for_the_console_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOJAFLOW_LOG_FORMAT", raising=False)
    assert _child_env(Settings())["MOJAFLOW_LOG_FORMAT"] == "console"
    monkeypatch.setenv("MOJAFLOW_LOG_FORMAT", "json")
    assert _child_env(Settings())["MOJAFLOW_LOG_FORMAT"] == "json"


def test_each_worker_serves_its_metrics_on_a_port_of_its_own() -> None:
    workers = [c for c in _components(Settings(worker_metrics_port=9100), workers=3) if c.name.startswith("worker")]
    assert [c.env for c in workers] == [{"MOJAFLOW_WORKER_METRICS_PORT": str(port)} for port in (9100, 9101, 9102)]
    assert [c.env for c in _components(Settings(), workers=2) if c.name.startswith("worker")] == [{}, {}]


def test_a_taken_worker_metrics_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env["MOJAFLOW_WORKER_METRICS_PORT"] = str(taken - 1)  # worker-2's is taken

        result = subprocess.run(
            [sys.executable, "-m", "mojaflow.launcher", "--workers", "2"], cwd=ROOT, env=env, capture_output=True,
            timeout=60,
        )  # fmt: skip

    assert result.returncode != 0
    assert f"port {taken} (worker-2 metrics) is already in use" in result.stderr.decode()
    assert not (tmp_path / "temporal.db").exists()


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env["MOJAFLOW_CLIENT_API_PORT"] = str(squatter.getsockname()[1])

        result = subprocess.run(
            [sys.executable, "-m", "mojaflow.launcher"], cwd=ROOT, env=env, capture_output=True, timeout=60
        )

    assert result.returncode != 0
    assert f"port {env['MOJAFLOW_CLIENT_API_PORT']} (api) is already in use" in result.stderr.decode()
    assert not (tmp_path / "temporal.db").exists()


def test_stops_within_ten_seconds_and_a_second_run_resumes_the_transfer(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    api, sdk = f"http://127.0.0.1:{env['MOJAFLOW_CLIENT_API_PORT']}", env["MOJAFLOW_SDK_URL"]
    receiver = f"http://127.0.0.1:{env['MOJAFLOW_WEBHOOK_RECEIVER_PORT']}"
    log = tmp_path / "launcher.log"
    first = launch(env, log)
    try:
        wait_healthy(api, first, log)
        ui = httpx.get(f"http://127.0.0.1:{env['MOJAFLOW_TEMPORAL_UI_PORT']}/", timeout=10)
        assert ui.status_code == 200  # the Temporal Web UI
        output = log.read_text()
        for component in ("temporal", "sdk-sim", "cbs-sim", "hook-sim", "worker", "api"):
            assert f"{component:>8} | " in output, f"no line prefixed by {component}"
        for component in ("worker", "api"):  # for the console by default, not JSON
            lines = [line.split(" | ", 1)[1] for line in output.splitlines() if line.startswith(f"{component:>8} | ")]
            assert any("[info     ]" in line for line in lines) and not any(line.startswith("{") for line in lines)
        key_file = tmp_path / "dev-api-key"  # the development key, made on first start
        assert key_file.stat().st_mode & 0o777 == 0o600
        auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        assert httpx.get(f"{api}/transfers", timeout=10).status_code == 401
        subscription = httpx.post(
            f"{api}/webhooks/subscriptions", headers=auth, timeout=10,
            json={"url": f"{receiver}/hooks", "eventTypes": [EVENT_TYPE], "auth": {"type": "api_keys",
                  "headers": {"X-Demo-Key": "make-run-demo"}}},
        )  # fmt: skip
        assert subscription.status_code == 201, subscription.text  # plain http to 127.0.0.1: allowed by make run
        body = transfer_body()
        httpx.put(f"{sdk}/_sim/faults/{body['homeTransactionId']}", json={"moneyStepDelayS": 30}).raise_for_status()
        created = httpx.post(
            f"{api}/transfers", json=body, headers={**money_movement_headers(), **auth, "Prefer": "respond-async"},
            timeout=10,
        ).json()  # fmt: skip
        deadline = time.monotonic() + 30
        while _read(api, created["transferId"], auth)["currentState"] != "TRANSFERRING":
            assert time.monotonic() < deadline, "the transfer never reached the money step"
            time.sleep(0.1)
    finally:
        stopped_in = _stop(first)
    assert stopped_in < 10
    assert first.returncode == 0

    second = launch(env, log)
    try:
        wait_healthy(api, second, log)
        deadline = time.monotonic() + 90
        while (state := _read(api, created["transferId"], auth))["currentState"] != "COMPLETED":
            assert time.monotonic() < deadline, f"not resumed: {state['currentState']}"
            time.sleep(0.2)
        sdk_view = httpx.get(f"{sdk}/_sim/transfers/{state['sdkTransferId']}").json()
        assert sdk_view["prepareCount"] == 1
        _wait_for_event(receiver, created["transferId"], "COMPLETED")
    finally:
        _stop(second)
    assert log.read_text().count(auth["Authorization"].removeprefix("Bearer ")) == 1  # printed at first start only


def test_a_killed_worker_or_api_comes_back_and_a_killed_dev_server_stops_everything(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    api = f"http://127.0.0.1:{env['MOJAFLOW_CLIENT_API_PORT']}"
    log = tmp_path / "launcher.log"
    launcher = launch(env, log, "--workers", "2")
    try:
        wait_healthy(api, launcher, log)
        first = announced_pids(log)
        assert {"temporal", "sdk-sim", "cbs-sim", "hook-sim", "worker-1", "worker-2", "api"} <= set(first)
        for worker in ("worker-1", "worker-2"):  # both: only the restarted ones can run the transfer below
            os.kill(first[worker], signal.SIGKILL)
        _until(lambda: all(announced_pids(log)[w] not in (first[w], None) for w in ("worker-1", "worker-2")),
               "the killed workers were not started again", log)  # fmt: skip
        output = log.read_text()
        assert re.search(r"mojaflow: worker-1 was killed by SIGKILL after \d+ s: restart 1 in 1 s", output)
        assert re.search(r"mojaflow: worker-2 was killed by SIGKILL after \d+ s: restart 1 in 1 s", output)

        auth = {"Authorization": f"Bearer {(tmp_path / 'dev-api-key').read_text().strip()}"}
        created = httpx.post(
            f"{api}/transfers", json=transfer_body(), headers={**money_movement_headers(), **auth, "Prefer": "wait=30"},
            timeout=40,
        )  # fmt: skip
        assert created.status_code in (201, 202), created.text
        transfer_id = created.json()["transferId"]
        _until(lambda: _read(api, transfer_id, auth)["currentState"] == "COMPLETED",
               "the transfer did not complete on the restarted workers", log)  # fmt: skip

        os.kill(first["api"], signal.SIGKILL)
        _until(lambda: announced_pids(log)["api"] != first["api"], "the killed API was not started again", log)
        wait_healthy(api, launcher, log)
        assert _read(api, transfer_id, auth)["currentState"] == "COMPLETED"  # the new API answers from the database

        everyone = list(announced_pids(log).values())
        os.kill(first["temporal"], signal.SIGKILL)
        launcher.wait(timeout=20)
    finally:
        if launcher.poll() is None:
            _stop(launcher)
    assert launcher.returncode == 1
    output = log.read_text()
    assert "mojaflow: temporal was killed by SIGKILL: stopping everything" in output
    assert "mojaflow: restarts while up: worker-1 1, worker-2 1, api 1" in output
    assert [pid for pid in everyone if _alive(pid)] == []  # every process it started is gone
    assert "\nworker-1 | " in output and "\nworker-2 | " in output  # each worker's lines, prefixed by its name
