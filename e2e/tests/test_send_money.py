"""The pm4ml Send Money API against the real SDK 18.0.2 and TTK: a P2P transfer as today's Payment Manager core
connectors' clients send it (no Money Movement headers), quote then confirmation, answers as the spec says."""

from __future__ import annotations

import uuid

import httpx

from e2e.tests.conftest import E2E
from e2e.tests.flows import balances, switch_saw
from tests.support.spec_schemas import SEND_MONEY_SPEC, schema_errors
from tests.support.transfers import new_payer

PAYEE = "25633333333"  # TTK's fixed payee (e2e/harness/ttk_rules.py)


async def test_a_send_money_p2p_transfer_completes_through_the_real_sdk(e2e: E2E, http: httpx.AsyncClient) -> None:
    payer, account_id = await new_payer(http, e2e.stack.cbs_url)
    home = f"HTX-{uuid.uuid4()}"
    body = {
        "homeTransactionId": home, "payeeId": PAYEE, "payeeIdType": "MSISDN", "sendAmount": "12.00",
        "sendCurrency": "USD", "purposeCode": "MP2P", "transactionType": "TRANSFER",
        "payer": {"name": "John Doe", "payerId": payer},
    }  # fmt: skip

    quoted = await http.post(f"{e2e.stack.api_url}/send-money", json=body)

    assert quoted.status_code == 200, quoted.text
    quote = quoted.json()
    assert schema_errors(SEND_MONEY_SPEC, "sendMoneyResponse", quote) == []
    assert quote["payeeDetails"] == {"idType": "MSISDN", "idValue": PAYEE, "fspId": "testingtoolkitdfsp",
                                     "name": "Test Payee"}  # fmt: skip
    assert (quote["sendAmount"], quote["receiveAmount"], quote["homeTransactionId"]) == ("12", "12", home)
    assert await balances(e2e, http, account_id) == ("1000.00", "0.00")  # nothing held before the confirmation

    confirmation = {"acceptQuote": True, "homeTransactionId": home}
    confirmed = await http.put(f"{e2e.stack.api_url}/send-money/{quote['transactionId']}", json=confirmation)

    assert (confirmed.status_code, confirmed.json()) == (200, {"transferId": quote["transactionId"]}), confirmed.text
    assert await balances(e2e, http, account_id) == ("988.00", "0.00")
    status = (await http.get(f"{e2e.stack.api_url}/transfers/{quote['transactionId']}")).json()
    assert status["currentState"] == "COMPLETED"
    switch = await switch_saw(e2e, http, status["sdkTransferId"])
    assert switch is not None
    assert (switch["prepares"], switch["state"]) == (1, "COMMITTED")
