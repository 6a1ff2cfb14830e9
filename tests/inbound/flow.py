"""What the SDK sends to the backend API, shaped as in the capture `in_p2p_via_ttk.json`, and accounts of our own
at the CBS simulator (unique per test: the session stack is shared)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

__all__ = ["Payee", "new_payee", "notification", "quote_request", "switch_records", "transfer_request"]


class Payee:
    """An account holder at the CBS simulator, reachable by MSISDN."""

    def __init__(self, account_id: str, msisdn: str, currency: str) -> None:
        self.account_id = account_id
        self.msisdn = msisdn
        self.currency = currency

    async def account(self, http: httpx.AsyncClient, cbs_url: str) -> dict[str, Any]:
        response = await http.get(f"{cbs_url}/accounts/{self.account_id}")
        response.raise_for_status()
        return response.json()

    async def balances(self, http: httpx.AsyncClient, cbs_url: str) -> tuple[Decimal, Decimal]:
        """(balance, pendingCredits)."""
        account = await self.account(http, cbs_url)
        return Decimal(account["balance"]), Decimal(account["pendingCredits"])


async def new_payee(
    http: httpx.AsyncClient,
    cbs_url: str,
    *,
    status: str = "active",
    currency: str = "USD",
    balance: str = "100.00",
    limits: dict[str, str] | None = None,
) -> Payee:
    account_id = f"acc-in-{uuid.uuid4().hex[:12]}"
    msisdn = "2567" + "".join(random.choice("0123456789") for _ in range(8))
    body = {
        "accountId": account_id,
        "currency": currency,
        "status": status,
        "balance": balance,
        "limits": limits or {},
        "holder": {"displayName": "Inbound Payee", "firstName": "Inbound", "lastName": "Payee"},
        "parties": [{"idType": "MSISDN", "idValue": msisdn}],
    }
    response = await http.post(f"{cbs_url}/_sim/accounts", json=body)
    assert response.status_code in (200, 201), response.text
    return Payee(account_id, msisdn, currency)


def _payer() -> dict[str, Any]:
    return {
        "idType": "MSISDN",
        "idValue": "25611111111",
        "fspId": "testingtoolkitdfsp",
        "displayName": "Remote Payer",
        "dateOfBirth": "1970-01-01",
        "firstName": "Remote",
        "lastName": "Payer",
    }


def quote_request(
    payee: Payee, amount: str = "25", *, currency: str | None = None, expires_in_s: float | None = None, **extra: Any
) -> dict[str, Any]:
    transaction_id = str(uuid.uuid4())
    body: dict[str, Any] = {
        "quoteId": str(uuid.uuid4()),
        "transactionId": transaction_id,
        "to": {"idType": "MSISDN", "idValue": payee.msisdn, "fspId": "pm4mldfsp"},
        "from": _payer(),
        "amountType": "SEND",
        "amount": amount,
        "currency": currency or payee.currency,
        "transactionType": "TRANSFER",
        "initiator": "PAYER",
        "initiatorType": "CONSUMER",
        "note": "inbound test",
    }
    if expires_in_s is not None:
        expiration = datetime.now(UTC) + timedelta(seconds=expires_in_s)
        body["expiration"] = expiration.strftime("%Y-%m-%dT%H:%M:%S.") + f"{expiration.microsecond // 1000:03d}Z"
    body.update(extra)
    return body


def transfer_request(payee: Payee, quote: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The SDK's `POST /transfers` after the switch's prepare: transferId = the quote's transactionId."""
    body: dict[str, Any] = {
        "transferId": quote["transactionId"],
        "quote": quote,
        "from": _payer(),
        "to": {"idType": "MSISDN", "idValue": payee.msisdn, "fspId": "pm4mldfsp"},
        "amountType": "SEND",
        "currency": quote["transferAmountCurrency"],
        "amount": quote["transferAmount"],
        "transactionType": "TRANSFER",
        "ilpPacket": {"data": {"transactionId": quote["transactionId"], "quoteId": quote["quoteId"]}},
        "note": "inbound test",
    }
    body.update(overrides)
    return body


def notification(transfer_id: str, transfer_state: str | None, current_state: str = "COMPLETED") -> dict[str, Any]:
    """The SDK's `PUT /transfers/{id}` (RESERVE_NOTIFICATION=true), trimmed to what matters."""
    body: dict[str, Any] = {
        "transferId": transfer_id,
        "direction": "INBOUND",
        "currentState": current_state,
        "initiatedTimestamp": "2026-11-24T11:16:22.013Z",
        "homeTransactionId": "ignored",
        "fulfil": {"body": '{"transferState":"RESERVED"}'},
    }
    if transfer_state is not None:
        body["finalNotification"] = {"completedTimestamp": "2026-11-24T11:16:22.235Z", "transferState": transfer_state}
    else:
        body["lastError"] = {"httpStatusCode": 500, "mojaloopError": {"errorInformation": {"errorCode": "2001"}}}
    return body


async def switch_records(http: httpx.AsyncClient, sdk_url: str, transfer_id: str, transfer_state: str) -> None:
    """The switch's own record of an inbound transfer, kept by the SDK simulator's fake switch: what the SDK's
    `GET /transfers/{id}` answers about it. The real switch knows every transfer it forwarded to us, and has
    decided (COMMITTED or ABORTED) before the SDK relays its final notification: record that first."""
    response = await http.put(f"{sdk_url}/_sim/switch/{transfer_id}", json={"transferState": transfer_state})
    assert response.status_code == 200, response.text
