"""The SDK simulator's `POST /accounts`: identifier registration at the scheme's ALS, answered as SDK 18.0.2's
`AccountsModel` answers (`modules/api-svc/src/lib/model/AccountsModel.js`, `OutboundServer/handlers.js`).

One `POST /participants` per currency goes to the ALS; the SDK answers once each has its callback:
- 200 `{accounts, modelId, response, currentState: "COMPLETED", postAccountsResponse}`: `response` holds one entry
  per id, with `error: {statusCode, message}` on an id the ALS refused (still 200, as the SDK does);
- 500 `{message, statusCode: <the ALS's FSPIOP code>, executionState}` when the ALS answered an error callback;
- 504 `{message, statusCode: "504", executionState}` when it did not answer in time.

Magic ids (as the transfer triggers): `25600000409` refused by the ALS (3003 in its entry), `25600000500` → an error
callback 3003 for the whole request, `25600000408` → no callback, 504 after `--party-timeout-s`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from simulators.sdk_models import PartyIdType
from simulators.sdk_transfers import Answer

__all__ = ["AccountsBody", "register_accounts"]

REFUSED_ID, ALS_ERROR_ID, TIMEOUT_ID = "25600000409", "25600000500", "25600000408"
_ALS_ERROR = {"errorCode": "3003", "errorDescription": "Add Party information error"}


class AccountItem(BaseModel):
    """An `accountsRequest` item: the SDK's schema refuses any other field."""

    model_config = ConfigDict(extra="forbid")

    id_type: PartyIdType = Field(alias="idType")
    id_value: str = Field(alias="idValue", min_length=1, max_length=128)
    id_sub_value: str | None = Field(default=None, alias="idSubValue", min_length=1, max_length=128)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class AccountsBody(RootModel[list[AccountItem]]):
    pass


async def register_accounts(body: AccountsBody, raw: list[dict[str, Any]], party_timeout_s: float) -> Answer:
    state: dict[str, Any] = {"accounts": raw, "modelId": str(uuid.uuid4()), "response": []}
    for currency in dict.fromkeys(item.currency for item in body.root):  # one ALS request per currency, in order
        items = [item for item in body.root if item.currency == currency]
        request_id = str(uuid.uuid4())
        ids = {item.id_value for item in items}
        if TIMEOUT_ID in ids:
            await asyncio.sleep(party_timeout_s)
            message = f"Timeout waiting for response to account creation request {request_id}"
            return _error(504, "504", message, state, {"httpStatusCode": 504})
        if ALS_ERROR_ID in ids:
            state["postAccountsResponse"] = {"body": {"errorInformation": _ALS_ERROR}, "headers": {}}
            last_error = {"httpStatusCode": 500, "mojaloopError": {"errorInformation": _ALS_ERROR}}
            error_body = json.dumps({"errorInformation": _ALS_ERROR}, separators=(",", ":"))
            message = f"Got an error response creating accounts: {error_body}"
            return _error(500, _ALS_ERROR["errorCode"], message, state, last_error)
        parties = [_party(item) for item in items]
        callback: dict[str, Any] = {"partyList": parties}
        if currency is not None:
            callback["currency"] = currency
        state["postAccountsResponse"] = {"body": callback, "headers": {"content-type": _CALLBACK_TYPE}}
        state["response"].extend(_entry(party) for party in parties)
    return Answer(200, {**state, "currentState": "COMPLETED"})


_CALLBACK_TYPE = "application/vnd.interoperability.participants+json;version=1.1"


def _party(item: AccountItem) -> dict[str, Any]:
    party_id = {"partyIdType": item.id_type, "partyIdentifier": item.id_value, "fspId": "pm4mldfsp"}
    if item.id_sub_value:
        party_id["partySubIdOrType"] = item.id_sub_value
    party: dict[str, Any] = {"partyId": party_id}
    if item.id_value == REFUSED_ID:
        party["errorInformation"] = _ALS_ERROR
    return party


def _entry(party: dict[str, Any]) -> dict[str, Any]:
    """`_buildClientResponse`: the id, and the ALS's error for it."""
    party_id = party["partyId"]
    entry: dict[str, Any] = {"idType": party_id["partyIdType"], "idValue": party_id["partyIdentifier"]}
    if "partySubIdOrType" in party_id:
        entry["idSubValue"] = party_id["partySubIdOrType"]
    if "errorInformation" in party:
        info = party["errorInformation"]
        entry["error"] = {"statusCode": info["errorCode"], "message": info["errorDescription"]}
    return entry


def _error(
    status: Literal[500, 504], status_code: str, message: str, state: dict[str, Any], last_error: dict[str, Any]
) -> Answer:
    """`handleError(..., 'executionState')`: the model's state as it erred, `statusCode` its FSPIOP code if any."""
    execution_state = {**state, "currentState": "ERROR_OCCURRED", "lastError": last_error}
    return Answer(status, {"message": message, "executionState": execution_state, "statusCode": status_code})
