"""The published OpenAPI documents describe the real answers.

Each answer of the running stack, success or error, is checked against `/openapi.json` as that API serves it:
its status is documented for the route, its media type too (`application/problem+json` for the client API's
errors), and its body and headers are valid against the documented schema, where each error status narrows
`code` (client API) or `statusCode` (backend API, except 400) to the codes the route documents. A tampered copy
of the document shows the checks do fail when the document lies. A short generated run (schemathesis, fixed
seed) then sends the client API requests of its own: no 5xx, every answer as documented.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mojaflow.webhook_models import EVENT_TYPE, WebhookEvent
from tests.api.test_send_money import merchant_body, send_money_body
from tests.conftest import Stack
from tests.inbound.flow import new_payee, notification, quote_request, transfer_request
from tests.support.auth import client_api_auth
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state

CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]  # fmt: skip
TRANSFER = "/transfers/{transfer_id}"
INBOUND_TRANSFER = "/transfers/{transferId}"
SUBSCRIPTION = "/webhooks/subscriptions/{subscription_id}"
UNKNOWN = "3f1c0f6e-0000-4000-8000-000000000000"
TOO_DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON syntax, deeper than the parser goes
MANUAL = {"autoAcceptParty": False, "autoAcceptQuote": False}
SEND_MONEY_PATHS = {"/send-money", "/send-money/{transferId}", "/merchant-payment", "/merchant-payment/{transferId}",
                    "/accounts", "/accounts/{Type}/{ID}"}  # fmt: skip


@dataclass
class Published:
    """One API as it runs, and the document it publishes."""

    base_url: str
    document: dict[str, Any]

    @property
    def schema(self) -> BaseSchema:
        return schemathesis.openapi.from_dict(self.document)

    async def answer(
        self, http: httpx.AsyncClient, method: str, template: str, path: dict[str, str] | None = None, **request: Any
    ) -> httpx.Response:
        """Send the request, then check its answer against the published document."""
        response = await http.request(method, self.base_url + template.format(**(path or {})), **request)
        self.check(response, method, template, path)
        return response

    def check(
        self, response: httpx.Response, method: str, template: str, path: dict[str, str] | None = None,
        schema: BaseSchema | None = None,
    ) -> None:  # fmt: skip
        case = (schema or self.schema)[template][method].Case(path_parameters=path or {})
        case.validate_response(response, checks=CONFORMANCE)


@pytest.fixture(scope="module")
def client_api(stack: Stack) -> Published:
    return Published(stack.api_url, httpx.get(f"{stack.api_url}/openapi.json").raise_for_status().json())


@pytest.fixture(scope="module")
def backend_api(stack: Stack) -> Published:
    return Published(stack.backend_url, httpx.get(f"{stack.backend_url}/openapi.json").raise_for_status().json())


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.headers["content-type"]) == (status, "application/problem+json"), (
        response.text
    )
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    return problem


def _error(response: httpx.Response, status: int, status_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["statusCode"] == status_code


# -- the client API ----------------------------------------------------------------------------------------------


async def test_transfer_answers_201_200_202_and_reads_are_as_documented(
    stack: Stack, client_api: Published, http: httpx.AsyncClient
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    body, headers = transfer_body(payer=payer), money_movement_headers()

    created = await client_api.answer(http, "POST", "/transfers", json=body, headers=headers)
    replayed = await client_api.answer(http, "POST", "/transfers", json=body, headers=headers)
    reused = await client_api.answer(http, "POST", "/transfers", json={**body, "amount": "11"}, headers=headers)
    pending = await client_api.answer(
        http, "POST", "/transfers", json=transfer_body(payer=payer, **MANUAL),
        headers={**money_movement_headers(), "Prefer": "respond-async"},
    )  # fmt: skip

    assert created.status_code == 201, created.text
    assert created.json()["currentState"] == "COMPLETED"
    assert (replayed.status_code, replayed.headers["Idempotent-Replayed"]) == (200, "true")
    _problem(reused, 422, "idempotency_key_reused")
    assert (pending.status_code, pending.headers["Preference-Applied"]) == (202, "respond-async")
    transfer_id = created.json()["transferId"]
    read = await client_api.answer(http, "GET", TRANSFER, {"transfer_id": transfer_id})
    assert read.json()["transferId"] == transfer_id
    page = await client_api.answer(http, "GET", "/transfers", params={"homeTransactionId": body["homeTransactionId"]})
    assert [item["transferId"] for item in page.json()["items"]] == [transfer_id]
    await wait_for_state(http, stack.api_url, pending.json()["transferId"], {"WAITING_FOR_PARTY_ACCEPTANCE"})


async def test_decisions_and_their_refusals_are_as_documented(
    stack: Stack, client_api: Published, http: httpx.AsyncClient
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    started = await client_api.answer(
        http, "POST", "/transfers", json=transfer_body(payer=payer, **MANUAL), headers=money_movement_headers()
    )
    assert started.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE", started.text
    path = {"transfer_id": started.json()["transferId"]}

    def put(body: dict[str, Any]) -> Any:
        return client_api.answer(http, "PUT", TRANSFER, path, json=body, headers=money_movement_headers())

    too_early = await put({"acceptQuote": True})
    both = await put({"acceptParty": True, "acceptQuote": True})
    accepted = await put({"acceptParty": True})
    declined = await put({"acceptQuote": False})

    assert _problem(too_early, 409, "invalid_state")["type"] == "urn:mojaflow:problem:invalid_state"
    _problem(both, 422, "validation_error")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE"
    assert (declined.status_code, declined.json()["currentState"]) == (200, "ABORTED")

    # The checks are not vacuous: against a document without the 409, with another code or another media type
    # for it, the same answer fails.
    no_409, other_code, other_media = (copy.deepcopy(client_api.document) for _ in range(3))
    del no_409["paths"][TRANSFER]["put"]["responses"]["409"]
    conflict = other_code["paths"][TRANSFER]["put"]["responses"]["409"]["content"]["application/problem+json"]
    conflict["schema"]["allOf"][1]["properties"]["code"]["enum"] = ["transfer_not_found"]
    content = other_media["paths"][TRANSFER]["put"]["responses"]["409"]["content"]
    content["application/json"] = content.pop("application/problem+json")
    for document in (no_409, other_code, other_media):
        with pytest.raises(FailureGroup):
            client_api.check(too_early, "PUT", TRANSFER, path, schema=schemathesis.openapi.from_dict(document))


async def test_bad_requests_are_documented_problems(client_api: Published, http: httpx.AsyncClient) -> None:
    headers = money_movement_headers()
    without_key = {name: value for name, value in headers.items() if name != "idempotent_request_key"}
    json_headers = {**headers, "content-type": "application/json"}

    malformed = await client_api.answer(http, "POST", "/transfers", content=b'{"amount": ', headers=json_headers)
    too_deep = await client_api.answer(http, "POST", "/transfers", content=TOO_DEEP, headers=json_headers)
    no_header = await client_api.answer(http, "POST", "/transfers", json=transfer_body(), headers=without_key)
    no_header_put = await client_api.answer(
        http, "PUT", TRANSFER, {"transfer_id": UNKNOWN}, json={"acceptParty": True}, headers=without_key
    )
    invalid = await client_api.answer(
        http, "POST", "/transfers", json=transfer_body(currency="ZZZ"), headers=money_movement_headers()
    )
    unknown_get = await client_api.answer(http, "GET", TRANSFER, {"transfer_id": UNKNOWN})
    unknown_put = await client_api.answer(
        http, "PUT", TRANSFER, {"transfer_id": UNKNOWN}, json={"acceptParty": True}, headers=headers
    )
    bad_cursor = await client_api.answer(http, "GET", "/transfers", params={"cursor": "not-ours"})
    bad_limit = await client_api.answer(http, "GET", "/transfers", params={"limit": "0"})
    no_credential = await client_api.answer(
        http, "POST", "/transfers", json=transfer_body(), headers=headers, auth=None
    )

    _problem(malformed, 400, "malformed_json")
    _problem(too_deep, 400, "malformed_json")
    assert [error["field"] for error in _problem(no_header, 400, "invalid_header")["errors"]] == [
        "idempotent_request_key"
    ]
    _problem(no_header_put, 400, "invalid_header")
    assert [error["field"] for error in _problem(invalid, 422, "validation_error")["errors"]] == ["currency"]
    _problem(unknown_get, 404, "transfer_not_found")
    _problem(unknown_put, 404, "transfer_not_found")
    _problem(bad_cursor, 400, "invalid_cursor")
    _problem(bad_limit, 422, "validation_error")
    _problem(no_credential, 401, "unauthorized")
    assert no_credential.headers["WWW-Authenticate"].startswith("Bearer")


PROBES = ("/", "/health", "/ready")  # their 503 is their own status document, not an error


async def test_the_documents_promise_no_default_422_and_the_real_error_shapes(
    client_api: Published, backend_api: Published
) -> None:
    for api, media_type, error_model in (
        (client_api, "application/problem+json", "ProblemDetails"),
        (backend_api, "application/json", "ErrorResponse"),
    ):
        schemas = api.document["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        for path, operations in api.document["paths"].items():
            for method, operation in operations.items():
                for status, answer in operation["responses"].items():
                    if status.startswith(("4", "5")) and path not in PROBES:
                        expected = (media_type, error_model)
                        if api is client_api and path in SEND_MONEY_PATHS and status not in ("413", "431"):
                            expected = ("application/json", "AccountsFailed" if status in (
                                "500", "504") and path == "/accounts" else "SendMoneyError")  # fmt: skip
                        assert list(answer["content"]) == [expected[0]], (method, path, status)
                        assert expected[1] in str(answer["content"][expected[0]]["schema"]), (method, path, status)
    assert {"200", "201", "202", "400", "422", "500", "503"} <= set(
        client_api.document["paths"]["/transfers"]["post"]["responses"]
    )


async def test_webhook_subscriptions_and_deliveries_are_as_documented(
    client_api: Published, http: httpx.AsyncClient
) -> None:
    headers = {"client_key": f"o{uuid.uuid4().hex[:9]}"}  # a client of its own: no transfer, so no delivery
    auth = {"type": "basic", "username": "hooks", "password": "conformance"}
    body = {"url": "https://93.184.216.34/hooks", "eventTypes": [EVENT_TYPE], "auth": auth}  # a public IP literal

    created = await client_api.answer(http, "POST", "/webhooks/subscriptions", json=body, headers=headers)
    assert created.status_code == 201, created.text
    path = {"subscription_id": created.json()["subscriptionId"]}
    patched = await client_api.answer(
        http, "PATCH", SUBSCRIPTION, path, json={"states": ["COMPLETED"]}, headers=headers
    )
    rotated = await client_api.answer(http, "POST", f"{SUBSCRIPTION}/rotate-secret", path, headers=headers)
    listed = await client_api.answer(http, "GET", "/webhooks/subscriptions", headers=headers)
    invalid = await client_api.answer(
        http, "POST", "/webhooks/subscriptions", json={**body, "auth": {**auth, "username": "a:b"}}, headers=headers
    )
    unsafe = await client_api.answer(
        http, "POST", "/webhooks/subscriptions", json={**body, "url": "https://10.0.0.1/hooks"}, headers=headers
    )
    recovered = await client_api.answer(
        http, "POST", f"{SUBSCRIPTION}/recover", path, json={"since": "2026-01-01T00:00:00Z"}, headers=headers
    )
    deliveries = await client_api.answer(
        http, "GET", "/webhooks/deliveries", params={"status": "FAILED"}, headers=headers
    )
    no_delivery = await client_api.answer(http, "GET", "/webhooks/deliveries/{delivery_id}", {"delivery_id": UNKNOWN})
    no_retry = await client_api.answer(
        http, "POST", "/webhooks/deliveries/{delivery_id}/retry", {"delivery_id": UNKNOWN}, headers=headers
    )
    deleted = await client_api.answer(http, "DELETE", SUBSCRIPTION, path, headers=headers)
    gone = await client_api.answer(http, "GET", SUBSCRIPTION, path, headers=headers)

    assert (patched.status_code, patched.json()["states"]) == (200, ["COMPLETED"])
    assert rotated.status_code == 200 and rotated.json()["signingSecret"].startswith("whsec_")
    assert [item["subscriptionId"] for item in listed.json()["items"]] == [path["subscription_id"]]
    _problem(invalid, 422, "validation_error")
    _problem(unsafe, 422, "unsafe_url")
    assert (recovered.status_code, recovered.json()) == (202, {"restarted": 0, "deliveryIds": []})
    assert (deliveries.status_code, deliveries.json()) == (200, {"items": []})
    _problem(no_delivery, 404, "delivery_not_found")
    _problem(no_retry, 404, "delivery_not_found")
    assert deleted.status_code == 204
    _problem(gone, 404, "subscription_not_found")
    example = client_api.document["webhooks"][EVENT_TYPE]["post"]["requestBody"]["content"]["application/json"]
    assert WebhookEvent.model_validate(example["examples"]["completed"]["value"]).event_type == EVENT_TYPE


async def test_send_money_answers_are_as_documented(
    stack: Stack, client_api: Published, http: httpx.AsyncClient
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    body = send_money_body(payer)
    decide = "/send-money/{transferId}"

    quoted = await client_api.answer(http, "POST", "/send-money", json=body)
    path = {"transferId": quoted.json()["transactionId"]}
    pending = await client_api.answer(
        http, "POST", "/merchant-payment", json=merchant_body(payer), headers={"Prefer": "respond-async"}
    )
    invalid = await client_api.answer(http, "POST", "/send-money", json={**body, "sendAmount": "x"})
    unknown = await client_api.answer(http, "PUT", decide, {"transferId": UNKNOWN}, json={"acceptQuote": True,
                                      "homeTransactionId": "h"})  # fmt: skip
    confirmed = await client_api.answer(
        http, "PUT", decide, path, json={"acceptQuote": True, "homeTransactionId": body["homeTransactionId"]}
    )
    not_found = await client_api.answer(http, "POST", "/send-money", json=send_money_body(payer, payeeId="25600000404"))
    accounts = await client_api.answer(http, "POST", "/accounts", json=[{"idType": "MSISDN", "idValue": "25612"}])
    als_error = await client_api.answer(
        http, "POST", "/accounts", json=[{"idType": "MSISDN", "idValue": "25600000500"}]
    )
    no_delete = await client_api.answer(http, "DELETE", "/accounts/{Type}/{ID}", {"Type": "MSISDN", "ID": "25612"})
    read = await client_api.answer(http, "GET", TRANSFER, {"transfer_id": path["transferId"]})
    root = await client_api.answer(http, "GET", "/")

    assert [r.status_code for r in (quoted, pending, invalid, unknown, confirmed, not_found)] == [
        200, 504, 400, 404, 200, 500]  # fmt: skip
    assert [r.status_code for r in (accounts, als_error, no_delete, read, root)] == [200, 500, 501, 200, 200]
    assert read.json()["fulfil"]["body"]["transferState"] == "COMMITTED"


async def test_health_is_as_documented(client_api: Published, backend_api: Published, http: httpx.AsyncClient) -> None:
    for api, path in ((client_api, "/health"), (backend_api, "/"), (backend_api, "/health")):
        answer = await api.answer(http, "GET", path)
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


# -- the backend API ---------------------------------------------------------------------------------------------


async def test_backend_success_answers_are_as_documented(
    stack: Stack, backend_api: Published, http: httpx.AsyncClient
) -> None:
    payee = await new_payee(http, stack.cbs_url)

    party = await backend_api.answer(
        http, "GET", "/parties/{idType}/{idValue}", {"idType": "MSISDN", "idValue": payee.msisdn}
    )
    quote = await backend_api.answer(http, "POST", "/quoterequests", json=quote_request(payee))
    assert (party.status_code, quote.status_code) == (200, 200), quote.text
    reserved = await backend_api.answer(http, "POST", "/transfers", json=transfer_request(payee, quote.json()))
    assert reserved.status_code == 200, reserved.text
    assert reserved.json()["transferState"] == "RESERVED"
    path = {"transferId": quote.json()["transactionId"]}
    notified = await backend_api.answer(
        http, "PUT", INBOUND_TRANSFER, path, json=notification(path["transferId"], "COMMITTED")
    )
    assert notified.status_code == 200, notified.text
    read = await backend_api.answer(http, "GET", INBOUND_TRANSFER, path)  # the commit may still be under way
    assert (read.status_code, read.json()["transferState"]) in {(200, "RESERVED"), (200, "COMMITTED")}, read.text


async def test_backend_errors_are_documented(stack: Stack, backend_api: Published, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    party_path = "/parties/{idType}/{idValue}"
    json_headers = {"content-type": "application/json"}

    bad_id_type = await backend_api.answer(http, "GET", party_path, {"idType": "lowercase", "idValue": "x"})
    unknown_party = await backend_api.answer(http, "GET", party_path, {"idType": "MSISDN", "idValue": "25600000000"})
    malformed = await backend_api.answer(http, "POST", "/quoterequests", content=b"{", headers=json_headers)
    too_deep = await backend_api.answer(http, "POST", "/transfers", content=TOO_DEEP, headers=json_headers)
    invalid = await backend_api.answer(http, "POST", "/quoterequests", json={**quote_request(payee), "amount": "x"})
    unknown = await backend_api.answer(http, "GET", INBOUND_TRANSFER, {"transferId": UNKNOWN})
    unknown_put = await backend_api.answer(
        http, "PUT", INBOUND_TRANSFER, {"transferId": UNKNOWN}, json=notification(UNKNOWN, "COMMITTED")
    )
    bad_id = await backend_api.answer(http, "GET", INBOUND_TRANSFER, {"transferId": "not-a-uuid"})

    _error(bad_id_type, 400, "3100")
    _error(unknown_party, 404, "3204")
    _error(malformed, 400, "3101")
    _error(too_deep, 400, "3101")
    _error(invalid, 400, "3100")
    _error(unknown, 404, "3208")
    assert (unknown_put.status_code, unknown_put.json()) == (200, {})  # the SDK ignores it: logged, not refused
    _error(bad_id, 400, "3100")


# -- generated requests ------------------------------------------------------------------------------------------

GENERATED = settings(
    max_examples=15,
    derandomize=True,  # the same requests every run: a failure is reproducible, never a flake
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize(
    ("method", "template", "mode"),
    [
        *[(method, template, mode) for method, template in (("POST", "/transfers"), ("PUT", TRANSFER),
                                                            ("GET", "/transfers"), ("GET", "/webhooks/deliveries"),
                                                            ("POST", "/send-money"), ("POST", "/merchant-payment"),
                                                            ("PUT", "/send-money/{transferId}"), ("POST", "/accounts"))
                                                           for mode in GenerationMode],
        ("GET", TRANSFER, GenerationMode.POSITIVE),  # any string is a valid id: nothing negative to send
    ],
)  # fmt: skip
def test_generated_requests_get_documented_answers_and_no_5xx(
    stack: Stack, client_api: Published, payer: str, method: str, template: str, mode: GenerationMode
) -> None:
    operation = client_api.schema[template][method]

    @GENERATED
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        _own_payer_and_no_wait(case, payer)
        response = case.call(base_url=client_api.base_url, timeout=20, auth=_with_test_key)
        case.validate_response(response, checks=[not_a_server_error, *CONFORMANCE])
        assert response.status_code != 401, response.text  # it carries a valid key: the run reaches the routes
        import sys

        print(method, template, mode, response.status_code, response.text[:100], file=sys.stderr)

    run()


def _own_payer_and_no_wait(case: Case, payer: str) -> None:
    """Any transfer a generated request starts debits this test's own payer, and the request does not wait for it.
    Generated credentials are dropped: every request carries the tests' valid key (`_with_test_key`).
    Positive requests get valid Money Movement headers (the documented pattern admits a timestamp like month 13)
    with a fresh key, so that they reach the body and are not all replays of the first."""
    # generated credentials go: the run is about the routes, and every request carries the tests' valid key
    headers = {name: value for name, value in (case.headers or {}).items()
               if name.lower() not in ("authorization", "x-api-key")}  # fmt: skip
    if case.meta is not None and case.meta.generation.mode.is_positive:
        headers.update(money_movement_headers())
    elif re.fullmatch(r"[a-zA-Z0-9]{1,10}", str(headers.get("client_key", ""))):
        headers["client_key"] = "bank1"  # still valid; one API key for all, not one `mojaflow keys create` each
    case.headers = {**headers, "Prefer": "respond-async"}
    if isinstance(case.body, dict) and isinstance(case.body.get("from"), dict):
        case.body["from"].update(idType="MSISDN", idValue=payer)
    if isinstance(case.body, dict) and isinstance(case.body.get("payer"), dict):  # Send Money
        case.body["payer"]["payerId"] = payer


def _with_test_key(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """The API key tests/support/auth.py adds to every test request to our client API (`http` does it for httpx;
    schemathesis sends with requests)."""
    as_httpx = httpx.Request(str(request.method), str(request.url), headers=dict(request.headers))
    with_key = next(client_api_auth.sync_auth_flow(as_httpx))
    if "Authorization" in with_key.headers:
        request.headers["Authorization"] = with_key.headers["Authorization"]
    return request


@pytest.fixture(scope="module")
async def payer(stack: Stack) -> str:
    """A payer of the generated run's own, so that it drains no other test's account."""
    async with httpx.AsyncClient() as http:
        msisdn, _ = await new_payer(http, stack.cbs_url)
    return msisdn
