"""How `mojaflow cbs-check` judges one answer: against the contract's schemas (never printing the values it found)
and as mojaflow's CBS client would take it (activities.core_banking.REFUSALS)."""

from __future__ import annotations

from mojaflow.cbs_contract import Contract
from mojaflow.cbs_probe import Answer, judge_refusal, judge_success

CONTRACT = Contract.load()
PARTY = {
    "idType": "MSISDN",
    "idValue": "25699900001",
    "displayName": "Grace Hopper",
    "firstName": "Grace",
    "lastName": "Hopper",
    "accountId": "acc-9",
    "currency": "USD",
    "status": "active",
}


def test_the_contract_lists_the_operations_a_bank_implements() -> None:
    operations = set(CONTRACT.bank_operations)
    assert {
        *("health", "getParty", "getPartyWithSubId", "getAccount", "createHold", "getHold", "commitHold"),
        *("releaseHold", "checkCredit", "reserveCredit", "getCredit", "commitCredit", "releaseCredit"),
    } <= operations
    assert not any(operation.startswith("sim") for operation in operations)  # the simulator's admin API


def test_a_conforming_party_has_no_errors() -> None:
    assert CONTRACT.response_errors("getParty", 200, PARTY) == []


def test_schema_reasons_name_the_field_and_rule_never_the_value() -> None:
    body = {**PARTY, "dateOfBirth": "Grace Hopper", "currency": "usd"}
    del body["lastName"]
    errors = CONTRACT.response_errors("getParty", 200, body)
    assert "(body): missing required property 'lastName'" in errors
    assert "dateOfBirth: breaks format (format 'date')" in errors
    assert any(error.startswith("currency: breaks pattern") for error in errors)
    assert not any("Grace" in error or "usd" in error for error in errors)


def test_money_in_a_response_has_exactly_two_decimals() -> None:
    hold = {"holdId": "h", "holdKey": "k", "accountId": "a", "amount": "10.5", "currency": "USD", "status": "HELD"}
    assert CONTRACT.response_errors("createHold", 201, hold) == [
        "amount: money in a response carries exactly 2 decimal places"
    ]
    assert CONTRACT.response_errors("createHold", 201, {**hold, "amount": "10.50"}) == []


def test_an_undocumented_status_and_a_body_that_is_not_json() -> None:
    assert CONTRACT.response_errors("commitHold", 500, None) == [
        "HTTP 500 is not a documented answer (documented: 200, 404, 409)"
    ]
    assert CONTRACT.response_errors("commitHold", 200, None) == ["the body is not JSON"]


def refusal(status: int | None, code: str | None) -> Answer:
    return Answer(status, {"code": code, "message": "m"} if code else None, None if status else "ReadTimeout")


def test_judging_refusals_as_mojaflow_takes_them() -> None:
    expected = (409, "insufficient_funds", "create_hold")
    assert judge_refusal(refusal(409, "insufficient_funds"), *expected) is None
    assert judge_refusal(refusal(503, "insufficient_funds"), *expected) == (
        "expected HTTP 409 insufficient_funds, got HTTP 503 insufficient_funds: a refusal answered as a 5xx is "
        "retried by mojaflow as unavailability, never reported (non-conforming, dangerous)"
    )
    assert judge_refusal(refusal(409, "account_blocked"), *expected) == (
        "expected HTTP 409 insufficient_funds, got HTTP 409 account_blocked: mojaflow would take it as the refusal "
        "account_blocked"
    )
    assert judge_refusal(refusal(400, "insufficient_funds"), *expected) == (
        "expected HTTP 409 insufficient_funds, got HTTP 400 insufficient_funds: not a refusal mojaflow knows for "
        "this operation, so it would retry it as unavailability (non-conforming, dangerous)"
    )
    assert judge_refusal(Answer(201, {"holdId": "h"}), *expected) == (
        "expected HTTP 409 insufficient_funds, got HTTP 201: accepted what the contract refuses"
    )
    assert judge_refusal(refusal(None, None), *expected) == (
        "expected HTTP 409 insufficient_funds, got no answer (ReadTimeout)"
    )


def test_judging_successes_says_what_mojaflow_would_do_instead() -> None:
    assert judge_success(Answer(200, {}), (200,), "commit_hold") is None
    assert judge_success(refusal(409, "hold_released"), (200,), "commit_hold") == (
        "expected HTTP 200, got HTTP 409 hold_released: mojaflow would fail the transfer with this refusal"
    )
    assert judge_success(refusal(502, None), (200,), "commit_hold") == (
        "expected HTTP 200, got HTTP 502: mojaflow would retry it as unavailability"
    )
