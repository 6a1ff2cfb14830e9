"""What the fake switch and payee DFSP answer, in the shapes SDK 18.0.2 stores and returns.

The payee is the Testing Toolkit's fixed "Test TTK Payee" at `testingtoolkitdfsp` (see the reference captures).
Request records (`getPartiesRequest`, `quoteRequest`, `prepare`) carry their body as a JSON *string*, exactly as
the real SDK keeps them; callback records (`getPartiesResponse`, `quoteResponse`, `fulfil`) carry an object.
The fulfilment is random per transfer and the condition is its SHA-256, so they are consistent as in Mojaloop.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from decimal import Decimal
from email.utils import formatdate
from typing import Any

from simulators._common import iso_now, mojaloop_amount
from simulators.sdk_models import FaultSpec

__all__ = [
    "PAYEE_FSP",
    "PAYER_FSP",
    "condition_for",
    "error_response",
    "fulfil_record",
    "mojaloop_error",
    "new_fulfilment",
    "party_lookup",
    "prepare_record",
    "quote_records",
]

PAYER_FSP = "pm4mldfsp"
PAYEE_FSP = "testingtoolkitdfsp"
EXPIRY_S = 60.0
_PAYEE_NAMES = {"firstName": "Test", "middleName": "TTK", "lastName": "Payee", "dateOfBirth": "1984-01-01"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_fulfilment() -> str:
    """A fresh 32-byte fulfilment, base64url without padding (as Mojaloop writes it)."""
    return _b64url(os.urandom(32))


def condition_for(fulfilment: str) -> str:
    """The ILP condition matching a fulfilment: base64url(SHA-256(fulfilment bytes))."""
    raw = base64.urlsafe_b64decode(fulfilment + "=" * (-len(fulfilment) % 4))
    return _b64url(hashlib.sha256(raw).digest())


def _headers(resource: str, source: str, destination: str | None) -> dict[str, str]:
    headers = {
        "content-type": f"application/vnd.interoperability.{resource}+json;version=1.0",
        "date": formatdate(usegmt=True),
        "fspiop-source": source,
    }
    if destination:
        headers["fspiop-destination"] = destination
    return headers


def _callback_headers(resource: str, body: Any) -> dict[str, Any]:
    """Headers of a callback from the switch as the SDK stores them (incoming request headers, as captured)."""
    trace = "00-ccdd" + os.urandom(13).hex() + "-0123456789abcdef0-00"
    return {
        **_headers(resource, PAYEE_FSP, PAYER_FSP),
        "traceparent": trace,
        "user-agent": "axios/1.13.5",
        "content-length": len(json.dumps(body, separators=(",", ":"))),
        "accept-encoding": "gzip, compress, deflate, br",
        "host": "127.0.0.1:4000",
        "connection": "keep-alive",
    }


def _request(method: str, path: str, resource: str, destination: str | None, body: Any) -> dict[str, Any]:
    text = None if body is None else json.dumps(body, separators=(",", ":"))
    headers: dict[str, Any] = {
        **_headers(resource, PAYER_FSP, destination),
        "accept": f"application/vnd.interoperability.{resource}+json;version=1",
    }
    if text is not None:
        headers["content-length"] = len(text.encode())
    return {
        "method": method,
        "host": "127.0.0.1",
        "port": "5000",
        "path": path,
        "headers": headers,
        "agent": "[REDACTED]",
        "body": text,
    }


def party_lookup(to: dict[str, Any]) -> dict[str, Any]:
    """Fields the SDK adds to the record after a successful `GET /parties`: the enriched `to` and the exchange."""
    path = f"/parties/{to['idType']}/{to['idValue']}" + (f"/{to['idSubValue']}" if to.get("idSubValue") else "")
    id_info: dict[str, Any] = {"partyIdType": to["idType"], "partyIdentifier": to["idValue"]}
    if to.get("idSubValue"):
        id_info["partySubIdOrType"] = to["idSubValue"]
    id_info["fspId"] = PAYEE_FSP
    party = {
        "partyIdInfo": id_info,
        "name": "Test Payee",
        "personalInfo": {
            "complexName": {k: _PAYEE_NAMES[k] for k in ("firstName", "middleName", "lastName")},
            "dateOfBirth": _PAYEE_NAMES["dateOfBirth"],
        },
    }
    return {
        "to": {**to, "fspId": PAYEE_FSP, **_PAYEE_NAMES},
        "getPartiesRequest": _request("GET", path, "parties", None, None),
        "getPartiesResponse": {"headers": _callback_headers("parties", {"party": party}), "body": {"party": party}},
    }


def _money(currency: str, amount: Decimal) -> dict[str, str]:
    return {"currency": currency, "amount": mojaloop_amount(amount)}


def quote_records(record: dict[str, Any], faults: FaultSpec, condition: str) -> dict[str, Any]:
    """`quoteId`, `quoteRequest` and `quoteResponse` for the record, fees and expiry shaped by the faults.

    SEND: transferAmount = amount, payeeReceiveAmount = amount − fee + commission.
    RECEIVE: payeeReceiveAmount = amount, transferAmount = amount + fee − commission.
    `quoteTransferAmountDelta` then skews transferAmount alone, to make an inconsistent quote.
    """
    currency, amount = record["currency"], Decimal(record["amount"])
    fee = faults.quote_fee if faults.quote_fee is not None else Decimal(0)
    commission = faults.quote_commission if faults.quote_commission is not None else Decimal(0)
    if record["amountType"] == "SEND":
        transfer_amount, receive_amount = amount, amount - fee + commission
    else:
        transfer_amount, receive_amount = amount + fee - commission, amount
    if faults.quote_transfer_amount_delta is not None:
        transfer_amount += faults.quote_transfer_amount_delta
    expires_in = faults.quote_expires_in_s if faults.quote_expires_in_s is not None else EXPIRY_S
    quote_id = str(uuid.uuid4())
    quote_request = {
        "quoteId": quote_id,
        "transactionId": record["transferId"],
        "amountType": record["amountType"],
        "amount": _money(currency, amount),
        "expiration": iso_now(EXPIRY_S),
        "transactionType": {"scenario": record["transactionType"], "initiator": "PAYER", "initiatorType": "CONSUMER"},
    }
    ilp_packet = _b64url(json.dumps({"transactionId": record["transferId"], "quoteId": quote_id}).encode())
    quote_body = {
        "transferAmount": _money(currency, transfer_amount),
        "payeeReceiveAmount": _money(currency, receive_amount),
        "payeeFspFee": _money(currency, fee),
        "payeeFspCommission": _money(currency, commission),
        "expiration": iso_now(expires_in),
        "ilpPacket": ilp_packet,
        "condition": condition,
    }
    return {
        "quoteId": quote_id,
        "quoteRequest": _request("POST", "/quotes", "quotes", PAYEE_FSP, quote_request),
        "quoteResponse": {"headers": _callback_headers("quotes", quote_body), "body": quote_body},
        "quoteResponseSource": PAYEE_FSP,
    }


def prepare_record(record: dict[str, Any], expiry_s: float = EXPIRY_S) -> dict[str, Any]:
    """The `POST /transfers` the SDK sends to the switch; its body (a JSON string) holds the `expiration`."""
    quote = record["quoteResponse"]["body"]
    body = {
        "transferId": record["transferId"],
        "payeeFsp": PAYEE_FSP,
        "payerFsp": PAYER_FSP,
        "amount": quote["transferAmount"],
        "ilpPacket": quote["ilpPacket"],
        "condition": quote["condition"],
        "expiration": iso_now(expiry_s),
    }
    return _request("POST", "/transfers", "transfers", PAYEE_FSP, body)


def fulfil_record(transfer_state: str, completed_timestamp: str, fulfilment: str | None) -> dict[str, Any]:
    """The switch's `PUT /transfers/{id}` callback as the SDK stores it; the fulfilment only when COMMITTED."""
    body: dict[str, Any] = {"completedTimestamp": completed_timestamp, "transferState": transfer_state}
    if transfer_state == "COMMITTED" and fulfilment:
        body["fulfilment"] = fulfilment
    return {"body": body, "headers": _callback_headers("transfers", body)}


def mojaloop_error(code: str, description: str) -> dict[str, Any]:
    """`lastError` for an FSPIOP error callback (the SDK reports it with HTTP 500)."""
    return {
        "httpStatusCode": 500,
        "mojaloopError": {"errorInformation": {"errorCode": code, "errorDescription": description}},
    }


def error_response(message: str, status_code: str, transfer_state: dict[str, Any]) -> dict[str, Any]:
    """The SDK's error body: `{message, transferState, statusCode}` with the FSPIOP code (or "504") as a string."""
    return {"message": message, "transferState": transfer_state, "statusCode": status_code}
