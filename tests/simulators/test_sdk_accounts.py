"""The SDK simulator's `POST /accounts` (identifier registration) over real HTTP, its answers checked against the
SDK outbound API's own schemas (tests/fixtures/specs): 200 with an entry per id (an `error` on one the ALS
refused), 500 with the ALS's FSPIOP code, 504 when the ALS does not answer, 400 for a body the SDK refuses."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.simulators._sims import PARTY_TIMEOUT_S, Sim
from tests.support.spec_schemas import SDK_ACCOUNTS_SCHEMAS, schema_errors

ACCOUNTS = [
    {"idType": "MSISDN", "idValue": "25612345678", "currency": "USD"},
    {"idType": "PERSONAL_ID", "idValue": "ID-77", "idSubValue": "PASSPORT", "currency": "USD"},
    {"idType": "MSISDN", "idValue": "25687654321", "currency": "EUR"},
]


@pytest.fixture
def client(sdk_sim: Sim) -> httpx.Client:
    with httpx.Client(base_url=sdk_sim.url, timeout=10) as c:
        yield c


def _error_answer(body: dict[str, Any]) -> list[str]:
    """`errorAccountsResponse` is `allOf` an `errorResponse` that forbids other properties and `executionState`: no
    body can satisfy both (the SDK's own answers do not), so each part is checked on its own."""
    error = {name: body[name] for name in ("statusCode", "message") if name in body}
    return [
        *schema_errors(SDK_ACCOUNTS_SCHEMAS, "errorResponse", error),
        *schema_errors(SDK_ACCOUNTS_SCHEMAS, "accountsResponse", body["executionState"]),
        *([] if set(body) == {"statusCode", "message", "executionState"} else [f"other fields: {sorted(body)}"]),
    ]


def test_registered_ids_answer_one_entry_each(client: httpx.Client) -> None:
    response = client.post("/accounts", json=ACCOUNTS)

    assert response.status_code == 200, response.text
    body = response.json()
    assert schema_errors(SDK_ACCOUNTS_SCHEMAS, "accountsResponse", body) == []
    assert body["currentState"] == "COMPLETED"
    assert body["accounts"] == ACCOUNTS
    assert body["response"] == [{key: item[key] for key in item if key != "currency"} for item in ACCOUNTS]
    assert body["postAccountsResponse"]["body"]["currency"] == "EUR"  # the last request: one per currency


def test_an_id_the_als_refuses_carries_its_error_in_a_200(client: httpx.Client) -> None:
    accounts = [ACCOUNTS[0], {"idType": "MSISDN", "idValue": "25600000409", "currency": "USD"}]

    response = client.post("/accounts", json=accounts)

    assert response.status_code == 200, response.text
    assert schema_errors(SDK_ACCOUNTS_SCHEMAS, "accountsResponse", response.json()) == []
    first, refused = response.json()["response"]
    assert "error" not in first
    assert refused["error"] == {"statusCode": "3003", "message": "Add Party information error"}


def test_an_error_callback_from_the_als_is_500_with_its_code(client: httpx.Client) -> None:
    response = client.post("/accounts", json=[{"idType": "MSISDN", "idValue": "25600000500"}])

    assert response.status_code == 500, response.text
    body = response.json()
    assert _error_answer(body) == []
    assert body["statusCode"] == "3003"
    assert body["executionState"]["currentState"] == "ERROR_OCCURRED"
    assert body["executionState"]["lastError"]["mojaloopError"]["errorInformation"]["errorCode"] == "3003"


def test_no_answer_from_the_als_is_504_after_the_timeout(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/accounts", json=[{"idType": "MSISDN", "idValue": "25600000408"}])

    assert time.monotonic() - started >= PARTY_TIMEOUT_S
    assert response.status_code == 504, response.text
    assert _error_answer(response.json()) == []
    assert response.json()["statusCode"] == "504"


@pytest.mark.parametrize(
    "body",
    [
        {"idType": "MSISDN", "idValue": "25612345678"},  # not a list
        [{"idType": "MSISDN"}],  # no idValue
        [{"idType": "PHONE", "idValue": "1"}],  # not a Mojaloop id type
        [{"idType": "MSISDN", "idValue": "1", "extra": "x"}],  # the SDK's schema allows no other field
    ],
)
def test_a_body_the_sdk_refuses_is_400(client: httpx.Client, body: Any) -> None:
    response = client.post("/accounts", json=body)

    assert response.status_code == 400, response.text
    assert response.json()["statusCode"] == 400
