"""The CBS simulator's fault switch (`/_sim/faults/{operation}`) and call counters (`/_sim/calls`), over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.simulators._sims import Sim


@pytest.fixture
def client(cbs_sim: Sim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cbs_sim.url, timeout=10) as c:
        c.delete("/_sim/faults")
        yield c
        c.delete("/_sim/faults")


def new_account(client: httpx.Client, balance: str = "100.00") -> str:
    account_id = f"acc-{uuid.uuid4().hex[:12]}"
    body = {
        "accountId": account_id,
        "currency": "USD",
        "balance": balance,
        "holder": {"displayName": "Test Holder", "firstName": "Test", "lastName": "Holder"},
        "parties": [{"idType": "ACCOUNT_ID", "idValue": account_id}],
    }
    assert client.post("/_sim/accounts", json=body).status_code == 201
    return account_id


def hold(client: httpx.Client, account_id: str, key: str | None = None, amount: str = "10.00") -> httpx.Response:
    body = {"holdKey": key or uuid.uuid4().hex, "accountId": account_id, "amount": amount, "currency": "USD"}
    return client.post("/holds", json=body)


def account(client: httpx.Client, account_id: str) -> dict[str, Any]:
    return client.get(f"/accounts/{account_id}").json()


def fault(client: httpx.Client, operation: str, **spec: Any) -> dict[str, Any]:
    r = client.put(f"/_sim/faults/{operation}", json=spec)
    assert r.status_code == 200, r.text
    return r.json()


def test_down_answers_503_and_does_nothing(client: httpx.Client) -> None:
    acc = new_account(client)
    fault(client, "hold", mode="down")
    for _ in range(2):
        r = hold(client, acc)
        assert r.status_code == 503
        assert r.json()["code"] == "unavailable"
    assert account(client, acc)["held"] == "0.00"
    assert client.delete("/_sim/faults").status_code == 204
    assert hold(client, acc).status_code == 201


def test_times_limits_the_fault_and_calls_are_counted(client: httpx.Client) -> None:
    acc = new_account(client)
    before = client.get("/_sim/calls").json()
    fault(client, "hold", mode="down", times=2)
    assert client.get("/_sim/faults").json()["hold"]["remaining"] == 2
    key = uuid.uuid4().hex
    assert [hold(client, acc, key).status_code for _ in range(4)] == [503, 503, 201, 200]
    assert client.get("/_sim/faults").json() == {}
    after = client.get("/_sim/calls").json()
    assert after["hold"] - before["hold"] == 4
    assert all(after[op] == before[op] for op in after if op != "hold")
    assert account(client, acc)["held"] == "10.00"


def test_refuse_answers_the_contract_error_body(client: httpx.Client) -> None:
    acc = new_account(client)
    fault(client, "hold", mode="refuse", code="insufficient_funds", times=1)
    r = hold(client, acc)
    assert r.status_code == 409
    assert r.json()["code"] == "insufficient_funds"
    assert isinstance(r.json()["message"], str)
    assert account(client, acc)["held"] == "0.00"
    fault(client, "resolve_party", mode="refuse", code="whatever_gateway", httpStatus=429, times=1)
    r = client.get(f"/parties/ACCOUNT_ID/{acc}")
    assert (r.status_code, r.json()["code"]) == (429, "whatever_gateway")
    assert client.get(f"/parties/ACCOUNT_ID/{acc}").status_code == 200


def test_slow_waits_then_takes_effect_once(client: httpx.Client) -> None:
    acc = new_account(client)
    fault(client, "hold", mode="slow", delayS=0.5)
    started = time.monotonic()
    key = uuid.uuid4().hex
    r = hold(client, acc, key)
    assert r.status_code == 201
    assert time.monotonic() - started >= 0.5
    assert hold(client, acc, key).status_code == 200
    assert account(client, acc)["held"] == "10.00"


async def test_slow_completes_even_if_the_caller_goes_away(cbs_sim: Sim, client: httpx.Client) -> None:
    acc = new_account(client)
    fault(client, "hold", mode="slow", delayS=0.6, times=1)
    body = {"holdKey": uuid.uuid4().hex, "accountId": acc, "amount": "7.00", "currency": "USD"}
    async with httpx.AsyncClient(base_url=cbs_sim.url, timeout=0.2) as impatient:
        with pytest.raises(httpx.TimeoutException):
            await impatient.post("/holds", json=body)
    assert account(client, acc)["held"] == "0.00"  # still waiting
    await asyncio.sleep(1.0)
    assert account(client, acc)["held"] == "7.00"
    assert client.post("/holds", json=body).status_code == 200  # the retry finds the one hold


@pytest.mark.parametrize(
    ("operation", "request_"),
    [
        ("commit_hold", ("POST", "/holds/h-x/commit", None)),
        ("release_hold", ("POST", "/holds/h-x/release", None)),
        ("credit_check", ("POST", "/credit-checks", {"accountId": "a", "amount": "1", "currency": "USD"})),
        (
            "reserve_credit",
            ("POST", "/credits", {"reservationKey": "k", "accountId": "a", "amount": "1", "currency": "USD"}),
        ),
        ("commit_credit", ("POST", "/credits/c-x/commit", None)),
        ("release_credit", ("POST", "/credits/c-x/release", None)),
        ("resolve_party", ("GET", "/parties/MSISDN/25600000001/sub", None)),
        ("list_holds", ("GET", "/holds?status=HELD&limit=1", None)),
    ],
)
def test_every_operation_has_a_switch(client: httpx.Client, operation: str, request_: tuple[str, str, Any]) -> None:
    method, path, body = request_
    before = client.get("/_sim/calls").json()[operation]
    fault(client, operation, mode="down", times=1)
    assert client.request(method, path, json=body).status_code == 503
    assert client.request(method, path, json=body).status_code != 503
    assert client.get("/_sim/calls").json()[operation] == before + 2


def test_delete_one_fault_and_reset_calls(client: httpx.Client) -> None:
    fault(client, "hold", mode="down")
    fault(client, "commit_hold", mode="down")
    assert client.delete("/_sim/faults/hold").status_code == 204
    assert set(client.get("/_sim/faults").json()) == {"commit_hold"}
    assert client.delete("/_sim/calls").status_code == 204
    assert set(client.get("/_sim/calls").json().values()) == {0}


@pytest.mark.parametrize(
    ("operation", "spec"),
    [
        ("nope", {"mode": "down"}),
        ("hold", {"mode": "explode"}),
        ("hold", {"mode": "refuse"}),  # a refusal needs its code
        ("hold", {"mode": "refuse", "code": "x", "httpStatus": 200}),
        ("hold", {"mode": "down", "times": 0}),
        ("hold", {"mode": "slow", "delayS": -1}),
    ],
)
def test_invalid_fault_specs_are_400(client: httpx.Client, operation: str, spec: dict[str, Any]) -> None:
    r = client.put(f"/_sim/faults/{operation}", json=spec)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request"
