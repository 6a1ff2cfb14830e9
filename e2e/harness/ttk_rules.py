"""What the Testing Toolkit answers as the payee's FSP: fixed, deterministic callbacks, and the magic values that
make it refuse (TTK's stock rules answer with random data).

| trigger (the SDK's request to the switch)  | TTK's answer                                   | the SDK answers us   |
| ------------------------------------------ | ---------------------------------------------- | -------------------- |
| any party                                  | `PUT /parties`: "Test Payee", fspId TTK's      | the party            |
| party `PARTY_NOT_FOUND`                    | `PUT /parties/.../error` 3204                  | 500, statusCode 3204 |
| party `PARTY_SILENT`                       | nothing                                        | 504 after its timeout|
| any quote                                  | `PUT /quotes`: the amount asked, no fees       | the quote            |
| quote of `QUOTE_REJECTED_AMOUNT`           | `PUT /quotes/{id}/error` 5101                  | 500, statusCode 5101 |
| any prepare                                | `PUT /transfers`: COMMITTED + TTK's fulfilment | COMPLETED            |
| prepare of `TRANSFER_REJECTED_AMOUNT`      | `PUT /transfers/{id}/error` 5105               | 500, statusCode 5105 |
| prepare of `TRANSFER_SILENT_AMOUNT`        | nothing                                        | 504 after its timeout|

`GET /transfers/{id}` never reaches TTK: the switch front answers it (e2e/harness/switch.py).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PARTY_NOT_FOUND",
    "PARTY_SILENT",
    "QUOTE_REJECTED_AMOUNT",
    "TRANSFER_REJECTED_AMOUNT",
    "TRANSFER_SILENT_AMOUNT",
    "callback_rules",
    "validation_rules",
]

PARTY_NOT_FOUND = "25600003204"
PARTY_SILENT = "25600000504"
QUOTE_REJECTED_AMOUNT = "5101"
TRANSFER_REJECTED_AMOUNT = "5105"
TRANSFER_SILENT_AMOUNT = "504"

_FSPIOP_1_0 = {"minorVersion": 0, "majorVersion": 1, "type": "fspiop", "asynchronous": True}


def _headers(resource: str) -> dict[str, str]:
    return {
        "Content-Type": f"application/vnd.interoperability.{resource}+json;version=1.0",
        "Date": "{$request.headers.date}",
        "FSPIOP-Source": "{$config.FSPID}",
        "FSPIOP-Destination": "{$request.headers.fspiop-source}",
    }


def _when(method: str, operation: str, *extra: dict[str, str]) -> dict[str, Any]:
    facts = [
        {"fact": "operationPath", "operator": "equal", "value": operation},
        {"fact": "method", "operator": "equal", "value": method},
    ]
    return {"all": [*extra, *facts]}


def _path_is(name: str, value: str) -> dict[str, str]:
    return {"fact": "pathParams", "operator": "equal", "value": value, "path": name}


def _amount_is(value: str) -> dict[str, str]:
    return {"fact": "body", "operator": "numericEqual", "value": value, "path": "amount.amount"}


def _rule(
    kind: str, rule_id: int, description: str, conditions: dict[str, Any], event: dict[str, Any]
) -> dict[str, Any]:
    return {
        "ruleId": rule_id, "priority": 1, "description": f"mojaflow e2e: {description}", "apiVersion": _FSPIOP_1_0,
        "conditions": conditions, "event": event, "type": kind, "version": 1,
    }  # fmt: skip


def _callback(path: str, resource: str, body: dict[str, Any], scripts: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"headers": _headers(resource), "body": body, "scripts": {}}
    if scripts:
        params["scripts"] = {"exec": scripts, "scriptingEngine": "javascript"}
    return {"method": "put", "path": path, "params": params, "type": "FIXED_CALLBACK"}


def _error(path: str, resource: str, code: str, description: str) -> dict[str, Any]:
    body = {"errorInformation": {"errorCode": code, "errorDescription": description}}
    return {"method": "put", "path": path, "params": {"headers": _headers(resource), "body": body, "scripts": {}},
            "type": "FIXED_ERROR_CALLBACK"}  # fmt: skip


_SILENT: dict[str, Any] = {"method": None, "path": None, "params": {}, "type": "NO_CALLBACK"}


def _party(sub_id: bool) -> dict[str, Any]:
    info = {
        "partyIdType": "{$request.params.Type}",
        "partyIdentifier": "{$request.params.ID}",
        "fspId": "{$config.FSPID}",
    }
    if sub_id:
        info["partySubIdOrType"] = "{$request.params.SubId}"
    complex_name = {"firstName": "Test", "middleName": "TTK", "lastName": "Payee"}
    return {"party": {"partyIdInfo": info, "name": "Test Payee",
                      "personalInfo": {"complexName": complex_name, "dateOfBirth": "1984-01-01"}}}  # fmt: skip


def _amount(currency_of: str, amount: str) -> dict[str, str]:
    return {"currency": f"{{$request.body.{currency_of}}}", "amount": amount}


def callback_rules() -> list[dict[str, Any]]:
    quote = {
        "transferAmount": _amount("amount.currency", "{$request.body.amount.amount}"),
        "payeeReceiveAmount": _amount("amount.currency", "{$request.body.amount.amount}"),
        "payeeFspFee": _amount("amount.currency", "0"),
        "payeeFspCommission": _amount("amount.currency", "0"),
        "expiration": "{$environment.e2eQuoteExpiration}",
    }  # TTK adds the ilpPacket and the condition (and keeps them to fulfil the prepare)
    expiry = ["environment.e2eQuoteExpiration = new Date(Date.now() + 10 * 60 * 1000).toISOString()"]
    committed = {"completedTimestamp": "{$function.generic.curDateISO}", "transferState": "COMMITTED"}
    return [
        _rule("callback", 1, "a party: the fixed payee", _when("get", "/parties/{Type}/{ID}"),
              _callback("/parties/{Type}/{ID}", "parties", _party(False))),
        _rule("callback", 2, "a party with a sub-id: the fixed payee", _when("get", "/parties/{Type}/{ID}/{SubId}"),
              _callback("/parties/{Type}/{ID}/{SubId}", "parties", _party(True))),
        _rule("callback", 3, "a quote: the amount asked, no fees", _when("post", "/quotes"),
              _callback("/quotes/{ID}", "quotes", quote, expiry)),
        _rule("callback", 4, "a prepare: COMMITTED (TTK adds the fulfilment)", _when("post", "/transfers"),
              _callback("/transfers/{ID}", "transfers", committed)),
    ]  # fmt: skip


def validation_rules() -> list[dict[str, Any]]:
    return [
        _rule("validation", 1, f"party {PARTY_NOT_FOUND}: 3204",
              _when("get", "/parties/{Type}/{ID}", _path_is("ID", PARTY_NOT_FOUND)),
              _error("/parties/{Type}/{ID}/error", "parties", "3204", "Party not found")),
        _rule("validation", 2, f"party {PARTY_SILENT}: no answer",
              _when("get", "/parties/{Type}/{ID}", _path_is("ID", PARTY_SILENT)), _SILENT),
        _rule("validation", 3, f"quote of {QUOTE_REJECTED_AMOUNT}: 5101",
              _when("post", "/quotes", _amount_is(QUOTE_REJECTED_AMOUNT)),
              _error("/quotes/{ID}/error", "quotes", "5101", "Payee rejected quote")),
        _rule("validation", 4, f"prepare of {TRANSFER_REJECTED_AMOUNT}: 5105",
              _when("post", "/transfers", _amount_is(TRANSFER_REJECTED_AMOUNT)),
              _error("/transfers/{ID}/error", "transfers", "5105", "Payee FSP rejected transaction")),
        _rule("validation", 5, f"prepare of {TRANSFER_SILENT_AMOUNT}: no answer",
              _when("post", "/transfers", _amount_is(TRANSFER_SILENT_AMOUNT)), _SILENT),
    ]  # fmt: skip
