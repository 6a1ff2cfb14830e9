"""Bad input gets a precise 4xx (problem+json) and starts nothing."""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.conftest import ROOT, Stack
from tests.support.process import ServerProcess, free_port
from tests.support.transfers import money_movement_headers, transfer_body


async def _no_workflow(stack: Stack, home_transaction_id: str) -> bool:
    return (await stack.client.count_workflows(f"HomeTransactionId = '{home_transaction_id}'")).count == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("client_key", None),
        ("client_key", "has space"),
        ("client_key", "elevenchars"),
        ("product", None),
        ("product", "crypto"),
        ("payment_channel", None),
        ("payment_channel", "carrier_pigeon"),
        ("idempotent_request_key", None),
        ("idempotent_request_key", "x" * 51),
        ("idempotent_request_key", "no/slash"),
        ("timestamp", None),
        ("timestamp", "2020-09-18T17:31:34"),  # no offset
        ("timestamp", "yesterday"),
        ("timestamp", "2020-13-45T17:31:34Z"),
    ],
)
async def test_each_bad_header_is_400_naming_it(
    stack: Stack, http: httpx.AsyncClient, header: str, value: str | None
) -> None:
    headers = money_movement_headers()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    body = transfer_body()

    response = await http.post(f"{stack.api_url}/transfers", json=body, headers=headers)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_header"
    assert problem["status"] == 400
    assert header in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == [header]
    assert await _no_workflow(stack, body["homeTransactionId"])


@pytest.mark.parametrize(
    "timestamp", ["2020-09-18T17:31:34.000-05:30", "2020-09-18T17:31:34Z", "2020-09-18T17:31:34+00:00"]
)
async def test_accepted_timestamp_formats(stack: Stack, http: httpx.AsyncClient, timestamp: str) -> None:
    response = await http.post(
        f"{stack.api_url}/transfers",
        json=transfer_body(),
        headers={**money_movement_headers(timestamp=timestamp), "Prefer": "respond-async"},
    )
    assert response.status_code == 202


async def test_headers_are_required_on_put_too(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.put(f"{stack.api_url}/transfers/any", json={"acceptParty": True})
    assert response.status_code == 400
    assert {error["field"] for error in response.json()["errors"]} == {
        "client_key", "product", "payment_channel", "idempotent_request_key", "timestamp",
    }  # fmt: skip


async def test_malformed_json_is_400(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{stack.api_url}/transfers",
        content=b'{"homeTransactionId": "x",',
        headers={**money_movement_headers(), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "-5"}, "amount"),
        ({"amount": "10.123456"}, "amount"),
        ({"amount": 10}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"amountType": "BOTH"}, "amountType"),
        ({"transactionType": "PAYMENT"}, "transactionType"),
        ({"to": {"idType": "PHONE", "idValue": "1"}}, "to.idType"),
        ({"from": {"idType": "MSISDN"}}, "from.idValue"),
        ({"homeTransactionId": ""}, "homeTransactionId"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_schema_failures_are_422_naming_the_field(
    stack: Stack, http: httpx.AsyncClient, change: dict, field: str
) -> None:
    body = {**transfer_body(), **change}

    response = await http.post(f"{stack.api_url}/transfers", json=body, headers=money_movement_headers())

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert field in [error["field"] for error in problem["errors"]]
    if body.get("homeTransactionId"):
        assert await _no_workflow(stack, body["homeTransactionId"])


async def test_health_is_ok_with_temporal_and_a_worker(stack: Stack, http: httpx.AsyncClient) -> None:
    client_api = await http.get(f"{stack.api_url}/health")
    backend_api = await http.get(f"{stack.backend_url}/health")
    assert client_api.json() == backend_api.json() == {"status": "ok"}


async def test_openapi_documents_the_transfer_routes(stack: Stack, http: httpx.AsyncClient) -> None:
    paths = (await http.get(f"{stack.api_url}/openapi.json")).json()["paths"]
    assert {"post", "get"} <= set(paths["/transfers"])
    assert {"put", "get"} <= set(paths["/transfers/{transfer_id}"])


async def test_health_is_503_when_no_worker_polls_our_task_queue(stack: Stack, http: httpx.AsyncClient) -> None:
    port = free_port()
    env = {**stack.env, "MOJAFLOW_TASK_QUEUE": "nobody-polls-this", "MOJAFLOW_CLIENT_API_PORT": str(port),
           "MOJAFLOW_BACKEND_API_PORT": str(free_port())}  # fmt: skip
    with ServerProcess("api-without-worker", [sys.executable, "-m", "api"], env=env, cwd=str(ROOT),
                       health_url=f"http://127.0.0.1:{port}/openapi.json",
                       log_path=stack.data_dir / "api-without-worker.log").start():  # fmt: skip
        response = await http.get(f"http://127.0.0.1:{port}/health")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "no worker polls task queue nobody-polls-this"}
