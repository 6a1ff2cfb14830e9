"""Strict input: what looks like a number, a currency or a boolean but is not one is a 4xx naming the field, and
the bank's policy (acceptance, the fee cap) is not the caller's to loosen."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from api.commands import Acceptance
from api.transfer_service import transfer_policy
from mojaflow.models import TransferPolicy, TransferRequest
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.support.transfers import money_movement_headers, transfer_body


async def _no_workflow(stack: Stack, home_transaction_id: str) -> bool:
    return (await stack.client.count_workflows(f"HomeTransactionId = '{home_transaction_id}'")).count == 0


def _assert_problem(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]], problem
        assert field in problem["detail"]
    return problem


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "١٢"}, "amount"),  # Arabic-Indic digits: Decimal would read 12
        ({"amount": "１０"}, "amount"),  # fullwidth digits
        ({"amount": "10\n"}, "amount"),
        ({"currency": "ZZZ"}, "currency"),
        ({"currency": "XAU"}, "currency"),  # gold: no minor unit
        ({"currency": "UGX", "amount": "150.5"}, "amount"),  # UGX has no decimals
        ({"currency": "USD", "amount": "10.005"}, "amount"),  # USD has 2
        ({"autoAcceptParty": "yes"}, "autoAcceptParty"),
        ({"autoAcceptQuote": 1}, "autoAcceptQuote"),
        ({"autoAcceptQuote": "true"}, "autoAcceptQuote"),
        ({"note": "pay \u202eevil"}, "note"),
        ({"note": "line\x00"}, "note"),
        ({"homeTransactionId": "home-\u2066x\u2069"}, "homeTransactionId"),
        ({"homeTransactionId": "home-\x1b[31m"}, "homeTransactionId"),
        ({"to": {"idType": "MSISDN", "idValue": "256\u200e33"}}, "to.idValue"),
        ({"from": {"idType": "MSISDN", "idValue": "25644444444", "displayName": "A\u202bB"}}, "from.displayName"),
    ],
)
async def test_lookalike_input_is_422_naming_the_field(
    stack: Stack, http: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    body = {**transfer_body(), **change}

    response = await http.post(f"{stack.api_url}/transfers", json=body, headers=money_movement_headers())

    _assert_problem(response, 422, "validation_error", field)
    if body["homeTransactionId"].isprintable():
        assert await _no_workflow(stack, body["homeTransactionId"])


async def test_trailing_zeros_do_not_count_against_the_minor_unit(stack: Stack, http: httpx.AsyncClient) -> None:
    body = transfer_body(currency="UGX", amount="150.00")
    headers = {**money_movement_headers(), "Prefer": "respond-async"}

    response = await http.post(f"{stack.api_url}/transfers", json=body, headers=headers)

    assert response.status_code == 202, response.text
    assert response.json()["amount"] == "150"


@pytest.mark.parametrize("value", ["yes", 1, "true", None])
async def test_decisions_are_strict_booleans(stack: Stack, http: httpx.AsyncClient, value: object) -> None:
    response = await http.put(
        f"{stack.api_url}/transfers/any", json={"acceptParty": value, "acceptQuote": value} if value is None
        else {"acceptParty": value}, headers=money_movement_headers(),
    )  # fmt: skip
    if value is None:
        _assert_problem(response, 422, "validation_error")
    else:
        _assert_problem(response, 422, "validation_error", "acceptParty")


@pytest.mark.parametrize("depth", [10_000, 100_000])
async def test_json_nested_too_deep_is_400_malformed_json(stack: Stack, http: httpx.AsyncClient, depth: int) -> None:
    for path, method in (("/transfers", "POST"), ("/transfers/any", "PUT")):
        response = await http.request(
            method,
            f"{stack.api_url}{path}",
            content=b"[" * depth + b"]" * depth,
            headers={**money_movement_headers(), "content-type": "application/json"},
        )
        _assert_problem(response, 400, "malformed_json")


async def test_json_nested_deep_inside_a_field_is_a_4xx(stack: Stack, http: httpx.AsyncClient) -> None:
    body = transfer_body()
    raw = httpx.Request("POST", "/", json=body).content.decode()
    nested = "[" * 10_000 + "]" * 10_000
    content = raw[:-1] + f', "note": {nested}}}'

    response = await http.post(
        f"{stack.api_url}/transfers",
        content=content.encode(),
        headers={**money_movement_headers(), "content-type": "application/json"},
    )

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"] in {"malformed_json", "validation_error"}
    assert await _no_workflow(stack, body["homeTransactionId"])


# The policy a transfer runs under (`transfer_policy`; one stack per session, so tested directly).


def _policy(settings: dict[str, Any], **body: Any) -> TransferPolicy:
    request = TransferRequest.model_validate(transfer_body(**body))
    acceptance = Acceptance(party=request.auto_accept_party, quote=request.auto_accept_quote)
    return transfer_policy(Settings(_env_file=None, **settings), acceptance, request.amount)


@pytest.mark.parametrize("caller", [True, False, None])
def test_a_caller_cannot_make_a_manual_bank_policy_automatic(caller: bool | None) -> None:
    body = {} if caller is None else {"autoAcceptParty": caller, "autoAcceptQuote": caller}
    policy = _policy({"auto_accept_party": False, "auto_accept_quote": False}, **body)
    assert (policy.auto_accept_party, policy.auto_accept_quote) == (False, False)


@pytest.mark.parametrize(("caller", "expected"), [(True, True), (False, False), (None, True)])
def test_a_caller_can_make_an_automatic_policy_manual(caller: bool | None, expected: bool) -> None:
    body = {} if caller is None else {"autoAcceptParty": caller, "autoAcceptQuote": caller}
    policy = _policy({"auto_accept_party": True, "auto_accept_quote": True}, **body)
    assert (policy.auto_accept_party, policy.auto_accept_quote) == (expected, expected)


def test_the_bank_may_let_callers_decide() -> None:
    settings = {"auto_accept_party": False, "auto_accept_quote": False, "allow_caller_auto_accept": True}
    policy = _policy(settings, autoAcceptParty=True, autoAcceptQuote=True)
    assert (policy.auto_accept_party, policy.auto_accept_quote) == (True, True)


def test_the_default_fee_cap_is_not_unlimited() -> None:
    defaults = Settings(_env_file=None)
    assert defaults.max_fee is None and defaults.allow_caller_auto_accept is False

    policy = _policy({}, amount="200")

    assert policy.max_fee == defaults.max_fee_fixed + defaults.max_fee_rate * 200
    assert policy.max_fee is not None and policy.max_fee < Decimal("200")


def test_the_fee_cap_is_fixed_plus_rate_times_amount_per_transfer() -> None:
    settings = {"max_fee_fixed": Decimal("0.5"), "max_fee_rate": Decimal("0.01")}
    assert _policy(settings, amount="100").max_fee == Decimal("1.5")
    assert _policy(settings, amount="1000").max_fee == Decimal("10.5")


def test_max_fee_is_an_absolute_override() -> None:
    settings = {"max_fee": Decimal("5"), "max_fee_fixed": Decimal("1"), "max_fee_rate": Decimal("0.5")}
    assert _policy(settings, amount="1000").max_fee == Decimal("5")


def test_the_environment_sets_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOJAFLOW_MAX_FEE_FIXED", "2")
    monkeypatch.setenv("MOJAFLOW_MAX_FEE_RATE", "0.1")
    monkeypatch.setenv("MOJAFLOW_ALLOW_CALLER_AUTO_ACCEPT", "true")
    settings = Settings(_env_file=None)
    assert (settings.max_fee_fixed, settings.max_fee_rate, settings.allow_caller_auto_accept) == (
        Decimal("2"), Decimal("0.1"), True,
    )  # fmt: skip
