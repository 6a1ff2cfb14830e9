"""Party lookups, quote requests and bad input on the backend API: the CBS answers directly, no money held."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from activities.core_banking import CoreBankingClient
from api.backend import BackendError, InboundService
from mojaflow.database import Database
from mojaflow.inbound_models import QuoteRequestBody
from mojaflow.keys import load_party_hash_ring
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.inbound.flow import Payee, new_payee, quote_request, transfer_request
from tests.support.log_scan import records


async def test_party_lookup_answers_the_account_holder(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)

    response = await http.get(f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "idType": "MSISDN",
        "idValue": payee.msisdn,
        "displayName": "Inbound Payee",
        "firstName": "Inbound",
        "lastName": "Payee",
        "supportedCurrencies": ["USD"],
    }


async def test_party_lookup_with_a_sub_id_the_cbs_does_not_know_is_3204(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)

    response = await http.get(f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}/7")

    assert response.status_code == 404
    assert response.json() == {"statusCode": "3204", "message": "party not found"}


async def test_unknown_party_is_3204(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{stack.backend_url}/parties/MSISDN/25600000000")

    assert response.status_code == 404
    assert response.json()["statusCode"] == "3204"


async def test_blocked_account_is_5400(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url, status="blocked")

    party = await http.get(f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}")
    quote = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee))

    assert (party.status_code, party.json()["statusCode"]) == (400, "5400")
    assert (quote.status_code, quote.json()["statusCode"]) == (400, "5400")


@pytest.mark.parametrize("id_type", ["EMAIL", "lowercase"])
async def test_id_type_the_cbs_does_not_serve_is_3100(stack: Stack, http: httpx.AsyncClient, id_type: str) -> None:
    response = await http.get(f"{stack.backend_url}/parties/{id_type}/someone")

    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == "3100"
    assert "idType" in body["message"]


async def test_quote_under_the_default_policy_is_free_and_saved(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    request = quote_request(payee, "25.5")

    response = await http.post(f"{stack.backend_url}/quoterequests", json=request)

    assert response.status_code == 200, response.text
    quote = response.json()
    expiration = quote.pop("expiration")
    assert quote == {
        "quoteId": request["quoteId"],
        "transactionId": request["transactionId"],
        "transferAmount": "25.5",
        "transferAmountCurrency": "USD",
        "payeeReceiveAmount": "25.5",
        "payeeReceiveAmountCurrency": "USD",
        "payeeFspFeeAmount": "0",
        "payeeFspFeeAmountCurrency": "USD",
        "payeeFspCommissionAmount": "0",
        "payeeFspCommissionAmountCurrency": "USD",
    }
    seconds = (datetime.fromisoformat(expiration.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    assert 50 < seconds <= 60  # MOJAFLOW_QUOTE_EXPIRY_S=60 in the test stack
    assert expiration.endswith("Z") and len(expiration) == len("2026-11-24T11:21:22.016Z")
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("0"))  # nothing reserved


async def test_quote_expiration_is_capped_by_the_payers_expiration(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)

    quote = (await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, expires_in_s=5))).json()

    seconds = (datetime.fromisoformat(quote["expiration"].replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
    assert 0 < seconds <= 5


async def test_unsupported_currency_is_5106(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)

    response = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, currency="EUR"))

    assert response.status_code == 400
    assert response.json()["statusCode"] == "5106"


async def test_over_the_accounts_limit_is_5200(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url, limits={"maxCreditAmount": "20.00"})

    over = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, "20.01"))
    within = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, "20"))

    assert (over.status_code, over.json()["statusCode"]) == (400, "5200")
    assert within.status_code == 200


async def test_quote_for_an_unknown_payee_is_3204(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    request = quote_request(payee)
    request["to"]["idValue"] = "25600000000"

    response = await http.post(f"{stack.backend_url}/quoterequests", json=request)

    assert (response.status_code, response.json()["statusCode"]) == (404, "3204")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.pop("quoteId"), "quoteId"),
        (lambda b: b.update(amount="-5"), "amount"),
        (lambda b: b.update(amount=25), "amount"),
        (lambda b: b.update(amount="0"), "amount"),
        (lambda b: b.update(currency="usd"), "currency"),
        (lambda b: b.update(amountType="BOTH"), "amountType"),
        (lambda b: b["to"].pop("idValue"), "to.idValue"),
        (lambda b: b.update(transactionId="not-a-uuid"), "transactionId"),
        (lambda b: b.update(expiration="yesterday"), "expiration"),
    ],
)
async def test_bad_quote_request_is_3100_naming_the_field(
    stack: Stack, http: httpx.AsyncClient, change: object, field: str
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    body = quote_request(payee)
    change(body)  # type: ignore[operator]

    response = await http.post(f"{stack.backend_url}/quoterequests", json=body)

    assert response.status_code == 400, response.text
    error = response.json()
    assert error["statusCode"] == "3100"
    assert error["message"].startswith(f"{field}:"), error
    assert payee.msisdn not in response.text


@pytest.mark.parametrize("path", ["/quoterequests", "/transfers", "/transfers/3453f26a-86ad-4313-a301-20981fc15169"])
async def test_malformed_json_is_3101(stack: Stack, http: httpx.AsyncClient, path: str) -> None:
    method = "PUT" if path.count("/") == 2 else "POST"
    response = await http.request(
        method, f"{stack.backend_url}{path}", content=b'{"quoteId": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["statusCode"] == "3101"


@pytest.mark.parametrize("content", [b"[]", b"null", b"42", b'"text"', b"{}"])
async def test_a_body_that_is_not_the_object_expected_is_3100(
    stack: Stack, http: httpx.AsyncClient, content: bytes
) -> None:
    for path in ("/quoterequests", "/transfers"):
        response = await http.post(
            f"{stack.backend_url}{path}", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (path, content, response.text)
        assert response.json()["statusCode"] == "3100"


async def test_bad_transfer_body_is_3100_naming_the_field(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = (await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee))).json()
    body = transfer_request(payee, quote)
    del body["quote"]["transferAmount"]

    response = await http.post(f"{stack.backend_url}/transfers", json=body)

    assert response.status_code == 400
    assert response.json()["statusCode"] == "3100"
    assert response.json()["message"].startswith("quote.transferAmount:")


async def test_bad_notification_is_3100(stack: Stack, http: httpx.AsyncClient) -> None:
    transfer_id = "3453f26a-86ad-4313-a301-20981fc15169"

    no_final = await http.put(f"{stack.backend_url}/transfers/{transfer_id}", json={"currentState": "COMPLETED"})
    bad_state = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}",
        json={"finalNotification": {"transferState": "DONE", "completedTimestamp": "x"}},
    )
    bad_id = await http.put(f"{stack.backend_url}/transfers/not-an-id", json={"currentState": "ERROR_OCCURRED"})

    for response, field in ((no_final, "finalNotification"), (bad_state, "finalNotification.transferState"),
                            (bad_id, "transferId")):  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.json()["statusCode"] == "3100"
        assert response.json()["message"].startswith(f"{field}:")


async def test_a_final_notification_for_a_transfer_we_never_had_is_200_and_a_warning(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """The SDK ignores the answer; pm4ml's acceptance runs expect 200. Nothing was reserved, so nothing moves; the
    log says it happened. A read of it stays 404 3208."""
    transfer_id = str(uuid.uuid4())
    api_log = Path(stack.data_dir) / "api.log"

    put = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}",
        json={"finalNotification": {"transferState": "COMMITTED", "completedTimestamp": "2026-11-24T11:16:22.235Z"}},
    )
    get = await http.get(f"{stack.backend_url}/transfers/{transfer_id}")

    assert (put.status_code, put.json()) == (200, {})
    assert (get.status_code, get.json()["statusCode"]) == (404, "3208")
    warning = f"final notification for inbound transfer {transfer_id}, which we never had"
    await _until(lambda: ("warning", "mojaflow.api") in _logged(api_log, warning))
    assert (await stack.client.count_workflows(f"WorkflowId = 'inbound-{transfer_id}'")).count == 0


async def test_a_currency_the_bank_does_not_serve_is_5106_before_any_party_lookup(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """MOJAFLOW_CURRENCIES is USD,EUR in the tests: KES is refused for a payee the CBS does not even know (a
    lookup would have answered 3204), on the quote and on the transfer, and nothing starts."""
    payee = await new_payee(http, stack.cbs_url)
    unknown = Payee(msisdn="25600000000", account_id="none", currency="USD")
    quote = (await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee))).json()

    quoted = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(unknown, currency="KES"))
    served = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(unknown, currency="EUR"))
    transferred = await http.post(
        f"{stack.backend_url}/transfers", json=transfer_request(unknown, quote, currency="KES")
    )

    for response in (quoted, transferred):
        assert (response.status_code, response.json()["statusCode"]) == (400, "5106"), response.text
        assert response.json()["message"].startswith("currency:")
    assert (served.status_code, served.json()["statusCode"]) == (404, "3204")  # served: the lookup did run
    assert (await stack.client.count_workflows(f"WorkflowId = 'inbound-{quote['transactionId']}'")).count == 0


def _logged(log: Path, event: str) -> list[tuple[str, str]]:
    """(level, logger) of each line of the JSON log whose event starts with `event`."""
    return [(line["level"], line["logger"]) for line in records(log) if line["event"].startswith(event)]


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def test_unknown_route_is_an_fspiop_error_not_a_problem_document(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{stack.backend_url}/nowhere")

    assert response.status_code == 404
    assert set(response.json()) == {"statusCode", "message"}


async def test_health_on_the_root_path(stack: Stack, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{stack.backend_url}/")

    assert response.status_code == 200


async def test_no_party_id_in_the_api_log(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    await http.get(f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}")
    await http.get(f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}/5")
    await http.get(f"{stack.backend_url}/parties/lower/{payee.msisdn}")
    await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee))
    marker = "/parties/MSISDN/***"

    log = (stack.data_dir / "api.log").read_text()

    assert marker in log  # the access log did see the lookups
    assert payee.msisdn not in log


async def test_fee_and_commission_policy_in_the_quote(stack: Stack, http: httpx.AsyncClient, tmp_path: Path) -> None:
    """The policy's arithmetic, in process against the CBS simulator: receive = transfer - fee + commission."""
    settings = Settings(inbound_fee=Decimal("1.5"), inbound_commission=Decimal("0.25"), data_dir=tmp_path)
    database = Database(settings.resolved_database_url)
    await database.create_schema()
    payee = await new_payee(http, stack.cbs_url)
    async with httpx.AsyncClient(base_url=stack.cbs_url) as cbs:
        service = InboundService(stack.client, database, CoreBankingClient(cbs), settings)
        send = await service.quote(QuoteRequestBody.model_validate(quote_request(payee, "10")))
        receive = await service.quote(QuoteRequestBody.model_validate(quote_request(payee, "10", amountType="RECEIVE")))
        with pytest.raises(BackendError) as too_small:
            await service.quote(QuoteRequestBody.model_validate(quote_request(payee, "1.25")))
    saved = await database.get_quote(send["quoteId"])
    await database.close()

    amounts = ("transferAmount", "payeeReceiveAmount", "payeeFspFeeAmount", "payeeFspCommissionAmount")
    assert [send[name] for name in amounts] == ["10", "8.75", "1.5", "0.25"]
    assert [receive[name] for name in amounts] == ["11.25", "10", "1.5", "0.25"]
    assert too_small.value.status_code == "5100"
    assert saved is not None and saved["payee_receive_amount"] == "8.75"
    assert payee.msisdn not in str(saved)  # matched by a one-way key, not kept in clear


async def test_the_payee_id_is_matched_by_a_keyed_hash_not_a_plain_one(stack: Stack, http: httpx.AsyncClient) -> None:
    """An unkeyed SHA-256 of an MSISDN is reversed by trying every number: the stored key is an HMAC under the
    party-hash key (here generated into the stack's data dir), and the quote still matches its transfer."""
    payee = await new_payee(http, stack.cbs_url)
    quote = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee))
    assert quote.status_code == 200, quote.text
    database = Database(Settings(data_dir=stack.data_dir).resolved_database_url)
    saved = await database.get_quote(quote.json()["quoteId"])
    await database.close()
    hash_key = load_party_hash_ring(Settings(data_dir=stack.data_dir)).primary  # the ring file there
    message = f"MSISDN\x1f{payee.msisdn}\x1f".encode()

    assert saved is not None
    assert saved["payee_key"] == hmac.new(hash_key, message, hashlib.sha256).hexdigest()
    assert saved["payee_key"] != hashlib.sha256(message).hexdigest()
    transfer = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote.json()))
    assert transfer.status_code == 200, transfer.text
    assert transfer.json()["transferState"] == "RESERVED"
