"""Prometheus metrics, scraped as Prometheus does: the API's `GET /metrics` with an operator key, a worker's
`MOJAFLOW_WORKER_METRICS_PORT`, before and after one transfer through the real stack (a sibling API and worker
with a database, task queues and webhook receiver of their own, so the numbers are this test's).
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mojaflow.webhook_models import EVENT_TYPE
from tests.conftest import ROOT, Stack
from tests.support.auth import keys_for
from tests.support.process import free_port
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state
from tests.support.webhook_peers import webhook_receiver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PAYEE = "25633333333"


@pytest.fixture(scope="module")
def metered(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, str]]:
    """(a sibling stack whose worker serves metrics, the worker's metrics URL, a webhook receiver's URL)."""
    base = tmp_path_factory.mktemp("metrics")
    receiver = webhook_receiver(base / "receiver")
    port = free_port()
    own = {
        "MOJAFLOW_DATA_DIR": str(base / "data"),  # a database of its own: the gauges count this module's only
        "MOJAFLOW_WEBHOOK_TASK_QUEUE": f"tests-hooks-{uuid.uuid4()}",
        "MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "MOJAFLOW_WORKER_METRICS_PORT": str(port),
    }
    with receiver.process, stack.sibling(base, **own) as sibling:
        yield sibling, f"http://127.0.0.1:{port}/metrics", receiver.url


def _parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _scrape(http: httpx.AsyncClient, api_url: str, worker_url: str) -> tuple[str, str]:
    api = await http.get(f"{api_url}/metrics")  # the operator key (tests/support/auth.py)
    worker = await http.get(worker_url)
    assert api.status_code == 200, api.text
    assert worker.status_code == 200
    assert api.headers["content-type"].startswith("text/plain")
    assert worker.headers["content-type"].startswith("text/plain")
    return api.text, worker.text


async def _all_received(http: httpx.AsyncClient, receiver_url: str, transfer_id: str) -> list[Any]:
    """The events of a transfer at the receiver, once it has every one up to COMPLETED's (by their sequence)."""
    deadline = time.monotonic() + 30
    events: list[Any] = []
    while time.monotonic() < deadline:
        events = (await http.get(f"{receiver_url}/_sim/events", params={"transferId": transfer_id})).json()["events"]
        data = [event["body"]["data"] for event in events]
        last = [each["sequence"] for each in data if each["currentState"] == "COMPLETED"]
        if last and sorted(each["sequence"] for each in data) == list(range(1, last[0] + 1)):
            return sorted(data, key=lambda each: each["sequence"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"the receiver got {len(events)} events of {transfer_id}, not all up to COMPLETED")


async def test_a_transfer_moves_the_metrics_and_no_party_data_shows(
    metered: tuple[Stack, str, str], http: httpx.AsyncClient
) -> None:
    sibling, worker_url, receiver_url = metered
    client_key = f"m{uuid.uuid4().hex[:9]}"
    subscribed = await http.post(
        f"{sibling.api_url}/webhooks/subscriptions",
        json={"url": f"{receiver_url}/hooks", "eventTypes": [EVENT_TYPE], "auth": {"type": "basic",
              "username": "metrics", "password": uuid.uuid4().hex}},
        headers={"client_key": client_key},
    )  # fmt: skip
    assert subscribed.status_code == 201, subscribed.text
    payer, account_id = await new_payer(http, sibling.cbs_url)
    api_before, worker_before = map(_parse, await _scrape(http, sibling.api_url, worker_url))

    started = await http.post(
        f"{sibling.api_url}/transfers",
        json=transfer_body(payer=payer, payee=PAYEE, autoAcceptParty=False, autoAcceptQuote=True),
        headers=money_movement_headers(client_key=client_key),
    )
    assert started.status_code == 201, started.text
    transfer = started.json()
    assert transfer["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    waiting = _parse((await http.get(f"{sibling.api_url}/metrics")).text)
    assert _value(waiting, "mojaflow_transfers_in_progress", direction="outbound",
                  state="WAITING_FOR_PARTY_ACCEPTANCE") == 1  # fmt: skip
    assert _value(waiting, "mojaflow_transfers_in_progress", direction="outbound", state="RECONCILING") == 0
    assert ("mojaflow_transfers_in_progress", frozenset({("direction", "inbound"), ("state", "SETTLING")})) in waiting
    accepted = await http.put(
        f"{sibling.api_url}/transfers/{transfer['transferId']}",
        json={"acceptParty": True},
        headers=money_movement_headers(client_key=client_key),
    )
    assert accepted.status_code == 200, accepted.text
    done = await wait_for_state(http, sibling.api_url, transfer["transferId"], {"COMPLETED"})
    events = await _all_received(http, receiver_url, transfer["transferId"])
    states = [event["currentState"] for event in events]
    api_text, worker_text = await _scrape(http, sibling.api_url, worker_url)
    api, worker = _parse(api_text), _parse(worker_text)

    def moved(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # each state counted once, where it was saved: RECEIVED by the API, the rest by the worker
    changes = "mojaflow_transfer_state_changes_total"
    assert moved(api, api_before, changes, direction="outbound", state="RECEIVED", error_code="") == 1
    for state in set(states) - {"RECEIVED"}:
        assert moved(worker, worker_before, changes, direction="outbound", state=state, error_code="") == 1, state
    counted = sum(
        moved(after, before, changes, direction="outbound", state=state, error_code="")
        for after, before in ((api, api_before), (worker, worker_before))
        for state in set(states)
    )
    assert counted == len(states) == len(set(states))
    # one attempt at each phase, each request to the SDK and the CBS measured by operation
    for phase in ("party", "quote", "hold", "money_step", "settle"):
        labels = {"phase": phase, "direction": "outbound", "outcome": "ok"}
        assert moved(worker, worker_before, "mojaflow_phase_duration_seconds_count", **labels) == 1, phase
        assert moved(worker, worker_before, "mojaflow_phase_duration_seconds_sum", **labels) > 0, phase
    for operation in ("request_party", "accept_party", "accept_quote"):
        labels = {"operation": operation, "outcome": "ok"}
        assert moved(worker, worker_before, "mojaflow_sdk_request_duration_seconds_count", **labels) == 1, operation
    for operation in ("get_party", "create_hold", "commit_hold"):
        labels = {"operation": operation, "outcome": "ok"}
        assert moved(worker, worker_before, "mojaflow_cbs_request_duration_seconds_count", **labels) == 1, operation
    # every state's webhook delivered at its first attempt, with its lag
    delivered = moved(worker, worker_before, "mojaflow_webhook_attempts_total", outcome="delivered", reason="")
    assert delivered == len(states)
    assert moved(worker, worker_before, "mojaflow_webhook_delivery_lag_seconds_count") == len(states)
    # the worker's page carries Temporal's runtime metrics too
    temporal = {name for name, _ in worker if name.startswith("temporal_")}
    assert any(name.startswith("temporal_activity_execution_latency") for name in temporal), sorted(temporal)
    assert any(name.startswith("temporal_workflow_completed") for name in temporal), sorted(temporal)
    # the API's page: the database's gauges, nothing in progress any more
    waited = {"direction": "outbound", "state": "WAITING_FOR_PARTY_ACCEPTANCE"}
    assert _value(api, "mojaflow_transfers_in_progress", **waited) == 0
    assert ("mojaflow_webhook_deliveries_waiting", frozenset({("status", "PENDING")})) in api
    # the Grafana dashboard asks for metrics that exist
    dashboard = (ROOT / "deploy" / "grafana" / "mojaflow.json").read_text()
    wanted = set(re.findall(r"\b((?:mojaflow|temporal)_[a-z_]+)", dashboard))
    declared = set(re.findall(r"^# TYPE (\S+) ", api_text + worker_text, re.MULTILINE))  # a counter not yet moved
    served = {name for name, _ in (*api, *worker)} | declared
    assert len(wanted) > 10 and wanted <= served, sorted(wanted - served)
    # no party id, name, account or transfer id in any label or value
    personal = [payer, PAYEE, account_id, "Test Payee", "Test Payer", transfer["transferId"], done["sdkTransferId"],
                client_key, subscribed.json()["subscriptionId"]]  # fmt: skip
    for text in (api_text, worker_text):
        assert not [value for value in personal if value in text]
        assert "_created" not in text  # no creation-time series beside each counter


async def test_metrics_take_an_operator_key_only(stack: Stack, http: httpx.AsyncClient) -> None:
    client_key = await keys_for(stack.api_url).key_async("bank1")

    anonymous = await http.get(f"{stack.api_url}/metrics", headers={"Authorization": ""})
    clients = await http.get(f"{stack.api_url}/metrics", headers={"Authorization": f"Bearer {client_key}"})
    operators = await http.get(f"{stack.api_url}/metrics")  # the operator key (tests/support/auth.py)

    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert clients.status_code == 403
    assert clients.json()["code"] == "operator_required"
    assert "mojaflow_" not in clients.text
    assert operators.status_code == 200
    assert "# TYPE mojaflow_transfer_state_changes_total counter" in operators.text
    assert "# TYPE mojaflow_transfers_in_progress gauge" in operators.text


def test_a_worker_whose_metrics_port_is_taken_says_so_and_exits(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**stack.env, "MOJAFLOW_WORKER_METRICS_PORT": str(port), "MOJAFLOW_TASK_QUEUE": f"t-{uuid.uuid4()}"}
        result = subprocess.run(
            [sys.executable, "worker.py"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    assert result.returncode == 1
    assert f"MOJAFLOW_WORKER_METRICS_PORT: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_refused_hold_is_counted_with_its_codes(
    metered: tuple[Stack, str, str], http: httpx.AsyncClient
) -> None:
    sibling, worker_url, _ = metered
    payer, _ = await new_payer(http, sibling.cbs_url, balance="5.00")
    before = _parse((await _scrape(http, sibling.api_url, worker_url))[1])

    response = await http.post(
        f"{sibling.api_url}/transfers", json=transfer_body(payer=payer, amount="10"), headers=money_movement_headers()
    )
    assert response.status_code == 201, response.text
    assert response.json()["lastError"]["code"] == "insufficient_funds"
    after = _parse((await _scrape(http, sibling.api_url, worker_url))[1])

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("mojaflow_transfer_state_changes_total", direction="outbound", state="ABORTED",
                 error_code="insufficient_funds") == 1  # fmt: skip
    assert moved("mojaflow_cbs_request_errors_total", operation="create_hold", error="insufficient_funds") == 1
    assert moved("mojaflow_cbs_request_duration_seconds_count", operation="create_hold", outcome="refused") == 1
    assert moved("mojaflow_phase_duration_seconds_count", phase="hold", direction="outbound", outcome="error") == 1
    assert moved("mojaflow_sdk_request_duration_seconds_count", operation="decline_quote", outcome="ok") == 1
    assert moved("mojaflow_phase_duration_seconds_count", phase="money_step", direction="outbound", outcome="ok") == 0
