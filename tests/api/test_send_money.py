"""The pm4ml Send Money API on the client API, as a bank's existing systems call it (no Money Movement headers
unless a test says so), its answers validated against the spec's own schemas (tests/fixtures/specs): P2P and P2B to
COMPLETED with the payer debited once, the failures a pm4ml connector answers with 500 and the FSPIOP code, the 202
of a transfer still under way, idempotency by homeTransactionId, and 400 for every bad body."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.spec_schemas import SEND_MONEY_SPEC, components, schema_errors
from tests.support.transfers import (
    account,
    money_movement_headers,
    new_payer,
    set_fault,
    sim_transfer,
    wait_for_state,
)

PAYEE, PARTY_NOT_FOUND = "25633333333", "25600000404"
TRANSFER_REJECTED = "600"  # the SDK simulator's magic amount: the payee's FSP rejects the transfer (5105)


def send_money_body(payer: str, amount: str = "10.00", **overrides: Any) -> dict[str, Any]:
    """As the spec's example, for our payer and payee."""
    body: dict[str, Any] = {
        "homeTransactionId": f"HTX-{uuid.uuid4()}",
        "payeeId": PAYEE,
        "payeeIdType": "MSISDN",
        "sendAmount": amount,
        "sendCurrency": "USD",
        "purposeCode": "MP2P",
        "transactionType": "TRANSFER",
        "payer": {
            "name": "John Doe",
            "payerId": payer,
            "DateAndPlaceOfBirth": {"BirthDt": "20-09-2001", "CityOfBirth": "Lilongwe", "CtryOfBirth": "Malawi"},
        },
    }
    body.update(overrides)
    return body


def merchant_body(payer: str, amount: str = "10.00", **overrides: Any) -> dict[str, Any]:
    body = send_money_body(payer, **overrides)
    del body["sendAmount"]
    return {"receiveAmount": amount, "receiveCurrency": "USD", **body, **overrides}


def valid(schema: str, body: Any, patch: dict[str, Any] | None = None) -> Any:
    assert schema_errors(SEND_MONEY_SPEC, schema, body, patch=patch) == [], body
    return body


def status_schema() -> dict[str, Any]:
    """`transferStatusResponse`'s `currentState` widened to our documented states (the spec lists the SDK's)."""
    status = components(SEND_MONEY_SPEC)["schemas"]["transferStatus"]
    states = ["RECEIVED", "RESOLVING_PARTY", "REQUESTING_QUOTE", "HOLDING_FUNDS", "TRANSFERRING", "RECONCILING",
              "SETTLING", "ABORTED", "RESERVED", "COMMITTED"]  # fmt: skip
    return {"transferStatus": {**status, "enum": [*status["enum"], *states]}}


def failed(response: httpx.Response, status: int, status_code: str, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = valid("errorResponse", response.json())
    assert body["statusCode"] == status_code, body
    assert body["message"].startswith(f"{reason}"), body
    return body


@pytest.fixture
async def payer(stack: Stack, http: httpx.AsyncClient) -> tuple[str, str]:
    """A payer of the test's own: (msisdn, account id), 1000.00 USD."""
    return await new_payer(http, stack.cbs_url)


async def test_p2p_completes_and_debits_the_payer_once(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0], "10.50")

    quoted = await http.post(f"{stack.api_url}/send-money", json=body)

    assert quoted.status_code == 200, quoted.text
    quote = valid("sendMoneyResponse", quoted.json())
    assert quote["payeeDetails"] == {"idType": "MSISDN", "idValue": PAYEE, "fspId": "testingtoolkitdfsp",
                                     "name": "Test Payee"}  # fmt: skip
    assert (quote["sendAmount"], quote["sendCurrency"], quote["receiveAmount"]) == ("10.5", "USD", "10.5")
    assert (quote["targetFees"], quote["sourceFees"], quote["homeTransactionId"]) == (
        "0",
        "0",
        body["homeTransactionId"],
    )
    transfer_id = quote["transactionId"]
    assert (await account(http, stack.cbs_url, payer[1]))["balance"] == "1000.00"  # nothing held before the PUT

    confirmed = await http.put(
        f"{stack.api_url}/send-money/{transfer_id}",
        json={"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]},
    )
    again = await http.put(
        f"{stack.api_url}/send-money/{transfer_id}",
        json={"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]},
    )

    assert (confirmed.status_code, valid("ConfirmSendMoneyResponse", confirmed.json())) == (
        200, {"transferId": transfer_id},
    )  # fmt: skip
    assert (again.status_code, again.json()) == (200, {"transferId": transfer_id})
    balances = await account(http, stack.cbs_url, payer[1])
    assert (balances["balance"], balances["held"]) == ("989.50", "0.00")
    status = await http.get(f"{stack.api_url}/transfers/{transfer_id}")
    transfer = valid("transferStatusResponse", status.json(), patch=status_schema())
    assert transfer["currentState"] == "COMPLETED"
    assert transfer["fulfil"]["body"]["transferState"] == "COMMITTED"
    assert (await sim_transfer(http, stack.sdk_url, transfer["sdkTransferId"]))["prepareCount"] == 1
    by_sdk_id = await http.get(f"{stack.api_url}/transfers/{transfer['sdkTransferId']}")
    assert by_sdk_id.json() == transfer


async def test_p2b_receives_the_amount_and_the_payer_pays_the_fee(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = merchant_body(payer[0], "20")
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], quoteFee="1.5")

    quoted = await http.post(f"{stack.api_url}/merchant-payment", json=body)

    assert quoted.status_code == 200, quoted.text
    quote = valid("merchantPaymentResponse", quoted.json())
    assert (quote["sendAmount"], quote["receiveAmount"], quote["targetFees"]) == ("21.5", "20", "1.5")
    sdk_transfer_id = (await http.get(f"{stack.api_url}/transfers/{quote['transactionId']}")).json()["sdkTransferId"]
    confirmed = await http.put(  # by the SDK's transferId: the same transfer
        f"{stack.api_url}/merchant-payment/{sdk_transfer_id}",
        json={"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]},
    )
    assert (confirmed.status_code, confirmed.json()) == (200, {"transferId": quote["transactionId"]}), confirmed.text
    balances = await account(http, stack.cbs_url, payer[1])
    assert (balances["balance"], balances["held"]) == ("978.50", "0.00")
    transfer = (await http.get(f"{stack.api_url}/transfers/{quote['transactionId']}")).json()
    assert (transfer["amountType"], transfer["amount"], transfer["currentState"]) == ("RECEIVE", "20", "COMPLETED")


async def test_a_declined_quote_aborts_and_moves_nothing(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0])
    quote = (await http.post(f"{stack.api_url}/send-money", json=body)).json()
    url = f"{stack.api_url}/send-money/{quote['transactionId']}"

    declined = await http.put(url, json={"acceptQuote": False, "homeTransactionId": body["homeTransactionId"]})
    accepted_after = await http.put(url, json={"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]})

    failed(declined, 500, "4101", "quote_declined")
    failed(accepted_after, 500, "4101", "quote_declined")  # it ended: the answer says how, and it stays so
    transfer = (await http.get(f"{stack.api_url}/transfers/{quote['transactionId']}")).json()
    assert (transfer["currentState"], transfer["fulfil"]["body"]["transferState"]) == ("ABORTED", "ABORTED")
    balances = await account(http, stack.cbs_url, payer[1])
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")


async def test_a_payee_the_scheme_does_not_know_is_500_with_3204(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    response = await http.post(f"{stack.api_url}/send-money", json=send_money_body(payer[0], payeeId=PARTY_NOT_FOUND))

    body = failed(response, 500, "3204", "party_not_found")
    transfer = (await http.get(f"{stack.api_url}/transfers/{body['transferId']}")).json()
    assert transfer["currentState"] == "ERROR_OCCURRED"


async def test_a_transfer_the_payee_rejects_is_500_with_its_code_and_the_hold_released(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0], TRANSFER_REJECTED)
    quote = (await http.post(f"{stack.api_url}/send-money", json=body)).json()

    confirmed = await http.put(
        f"{stack.api_url}/send-money/{quote['transactionId']}",
        json={"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]},
    )

    failed(confirmed, 500, "5105", "payee_rejected")
    balances = await account(http, stack.cbs_url, payer[1])
    assert (balances["balance"], balances["held"]) == ("1000.00", "0.00")


async def test_a_transfer_still_under_way_is_202_never_500(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0])
    await set_fault(http, stack.sdk_url, body["homeTransactionId"], moneyStepDelayS=4)
    quote = (await http.post(f"{stack.api_url}/send-money", json=body)).json()
    url = f"{stack.api_url}/send-money/{quote['transactionId']}"
    decision = {"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]}

    pending = await http.put(url, json=decision, headers={"Prefer": "wait=1"})
    later = await http.put(url, json=decision, headers={"Prefer": "wait=15"})

    assert pending.status_code == 202, pending.text
    assert pending.json() == {"transferId": quote["transactionId"], "currentState": "TRANSFERRING"}
    assert (later.status_code, later.json()) == (200, {"transferId": quote["transactionId"]})
    assert (await account(http, stack.cbs_url, payer[1]))["balance"] == "990.00"


async def test_no_quote_within_the_wait_is_504_and_the_transfer_goes_on(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0])

    late = await http.post(f"{stack.api_url}/send-money", json=body, headers={"Prefer": "respond-async"})

    transfer_id = failed(late, 504, "2004", "timeout: no quote within 0 s")["transferId"]
    await wait_for_state(http, stack.api_url, transfer_id, {"WAITING_FOR_QUOTE_ACCEPTANCE"})
    retried = await http.post(f"{stack.api_url}/send-money", json=body)
    assert (retried.status_code, retried.json()["transactionId"]) == (200, transfer_id), retried.text


async def test_the_same_home_transaction_id_is_the_same_transfer(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0])

    first = await http.post(f"{stack.api_url}/send-money", json=body)
    second = await http.post(f"{stack.api_url}/send-money", json=body)
    other_body = await http.post(f"{stack.api_url}/send-money", json={**body, "sendAmount": "11"})
    other_door = await http.post(f"{stack.api_url}/merchant-payment", json=merchant_body(payer[0], **{
        "homeTransactionId": body["homeTransactionId"]}))  # fmt: skip

    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert second.json() == first.json()
    for refused in (other_body, other_door):
        failed(refused, 400, "3100", "idempotency_key_reused")
    query = f"HomeTransactionId = '{body['homeTransactionId']}'"
    assert (await stack.client.count_workflows(query)).count == 1


async def test_with_money_movement_headers_their_key_decides(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    headers = money_movement_headers()
    body = send_money_body(payer[0])
    del body["homeTransactionId"]  # the header key stands in for it

    first = await http.post(f"{stack.api_url}/send-money", json=body, headers=headers)
    again = await http.post(f"{stack.api_url}/send-money", json=body, headers=headers)
    new_key = await http.post(f"{stack.api_url}/send-money", json=body, headers=money_movement_headers())
    bad = await http.post(f"{stack.api_url}/send-money", json=body, headers={**headers, "product": "x"})

    assert first.status_code == 200, first.text
    assert again.json()["transactionId"] == first.json()["transactionId"]
    assert first.json()["homeTransactionId"] == headers["idempotent_request_key"]
    assert new_key.json()["transactionId"] != first.json()["transactionId"]
    failed(bad, 400, "3100", "invalid_header: header product must be one of")
    transfer = (await http.get(f"{stack.api_url}/transfers/{first.json()['transactionId']}")).json()
    assert transfer["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        *[
            ({"drop": name}, name)
            for name in ("payeeId", "payeeIdType", "sendAmount", "sendCurrency", "transactionType", "payer")
        ],  # fmt: skip
        ({"payer": {"name": "John Doe"}}, "payer.payerId"),
        ({"payer": {"payerId": "25644444444"}}, "payer.name"),
        ({"sendAmount": "10.001"}, "sendAmount"),  # USD has 2 decimals
        ({"sendAmount": "-5"}, "sendAmount"),
        ({"sendCurrency": "ZZZ"}, "sendCurrency"),
        ({"payeeIdType": "PHONE"}, "payeeIdType"),
        ({"transactionType": "DEPOSIT"}, "transactionType"),
        (
            {
                "payer": {
                    "name": "J",
                    "payerId": "1",
                    "DateAndPlaceOfBirth": {"BirthDt": "31-02-2001", "CityOfBirth": "x", "CtryOfBirth": "y"},
                }
            },
            "payer.DateAndPlaceOfBirth.BirthDt",
        ),  # fmt: skip
    ],
)
async def test_a_body_that_breaks_the_spec_is_400_naming_the_field(
    stack: Stack, http: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    body = send_money_body("25644444444")
    if "drop" in change:
        del body[change["drop"]]
    else:
        body.update(change)

    response = await http.post(f"{stack.api_url}/send-money", json=body)

    failed(response, 400, "3100", f"{field}:")
    assert (await stack.client.count_workflows(f"HomeTransactionId = '{body['homeTransactionId']}'")).count == 0


async def test_other_bad_requests_are_400(stack: Stack, http: httpx.AsyncClient) -> None:
    body = send_money_body("25644444444")
    no_home = {key: value for key, value in body.items() if key != "homeTransactionId"}
    fx = merchant_body("25644444444", receiveCurrency="EUR")

    as_json = {"content-type": "application/json"}
    malformed = await http.post(f"{stack.api_url}/send-money", content=b'{"payeeId": ', headers=as_json)
    too_deep = await http.post(f"{stack.api_url}/send-money", content="[" * 100_000 + "]" * 100_000, headers=as_json)
    without_key = await http.post(f"{stack.api_url}/send-money", json=no_home)
    conversion = await http.post(f"{stack.api_url}/merchant-payment", json=fx)
    no_decision = await http.put(f"{stack.api_url}/send-money/{uuid.uuid4()}", json={"homeTransactionId": "h"})

    failed(malformed, 400, "3101", "malformed_json")
    failed(too_deep, 400, "3101", "malformed_json")
    failed(without_key, 400, "3100", "homeTransactionId: required without the Money Movement headers")
    failed(conversion, 400, "3100", "fx_not_supported")
    failed(no_decision, 400, "3100", "acceptQuote:")


async def test_puts_that_name_no_transfer_of_ours_are_refused(
    stack: Stack, http: httpx.AsyncClient, payer: tuple[str, str]
) -> None:
    body = send_money_body(payer[0])
    quote = (await http.post(f"{stack.api_url}/send-money", json=body)).json()

    unknown = await http.put(
        f"{stack.api_url}/send-money/{uuid.uuid4()}", json={"acceptQuote": True, "homeTransactionId": "x"}
    )
    other_home = await http.put(
        f"{stack.api_url}/send-money/{quote['transactionId']}", json={"acceptQuote": True, "homeTransactionId": "x"}
    )
    missing = await http.get(f"{stack.api_url}/transfers/{uuid.uuid4()}")

    failed(unknown, 404, "3208", "transfer_not_found")
    failed(other_home, 400, "3100", "homeTransactionId:")
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/problem+json")
    assert (missing.json()["code"], missing.json()["statusCode"]) == ("transfer_not_found", "3208")
    assert (await account(http, stack.cbs_url, payer[1]))["held"] == "0.00"


async def test_identifiers_are_registered_through_the_sdk(stack: Stack, http: httpx.AsyncClient) -> None:
    accounts = [{"idType": "MSISDN", "idValue": "25612345678", "currency": "USD"},
                {"idType": "MSISDN", "idValue": "25600000409", "currency": "USD"}]  # fmt: skip

    registered = await http.post(f"{stack.api_url}/accounts", json=accounts)
    refused = await http.post(f"{stack.api_url}/accounts", json=[{"idType": "MSISDN", "idValue": "25600000500"}])
    timed_out = await http.post(f"{stack.api_url}/accounts", json=[{"idType": "MSISDN", "idValue": "25600000408"}])
    invalid = await http.post(f"{stack.api_url}/accounts", json=[{"idType": "MSISDN"}])
    deleted = await http.delete(f"{stack.api_url}/accounts/MSISDN/25612345678")

    assert registered.status_code == 200, registered.text
    answer = valid("accountsResponse", registered.json())
    assert answer["currentState"] == "COMPLETED"
    assert [entry.get("error", {}).get("statusCode") for entry in answer["response"]] == [None, "3003"]
    for response, status, code in ((refused, 500, "3003"), (timed_out, 504, "504")):
        assert response.status_code == status, response.text
        assert valid("errorResponse", {k: response.json()[k] for k in ("statusCode", "message")})["statusCode"] == code
        valid("accountsResponse", response.json()["executionState"])
    failed(invalid, 400, "3100", "0.idValue:")
    failed(deleted, 501, "2002", "not_implemented")


async def test_health_is_200_at_the_root(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{stack.api_url}/", auth=None)

    assert (response.status_code, response.json()) == (200, {"status": "ok"})
