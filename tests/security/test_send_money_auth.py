"""Who may call the Send Money routes: MOJAFLOW_SEND_MONEY_AUTH, apart from MOJAFLOW_AUTH. With `api_key` (the
default) as `/transfers`, refusals in the Send Money dialect; with `none` anyone who reaches the port sends money as
the bank itself (MOJAFLOW_DEFAULT_CLIENT_KEY) and reads, without a credential, only those outbound transfers."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.test_send_money import send_money_body
from tests.conftest import Stack
from tests.support.log_scan import records
from tests.support.transfers import money_movement_headers, new_payer, transfer_body


async def test_without_a_credential_the_send_money_routes_are_401(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as anonymous:
        response = await anonymous.post(f"{stack.api_url}/send-money", json=send_money_body("25644444444"))
        deleted = await anonymous.delete(f"{stack.api_url}/accounts/MSISDN/25644444444")

    for refused in (response, deleted):
        assert refused.status_code == 401, refused.text
        assert refused.json()["statusCode"] == "3000"
        assert refused.json()["message"].startswith("unauthorized: ")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")


async def test_with_send_money_auth_none_the_bank_sends_and_reads_only_its_own(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    with stack.sibling(tmp_path, MOJAFLOW_SEND_MONEY_AUTH="none") as open_door:
        theirs = await http.post(
            f"{open_door.api_url}/transfers", json=transfer_body(payer=payer), headers=money_movement_headers()
        )
        async with httpx.AsyncClient(timeout=30) as anonymous:
            quoted = await anonymous.post(f"{open_door.api_url}/send-money", json=send_money_body(payer))
            transfer_id = quoted.json()["transactionId"]
            own = await anonymous.get(f"{open_door.api_url}/transfers/{transfer_id}")
            other_clients = await anonymous.get(f"{open_door.api_url}/transfers/{theirs.json()['transferId']}")
            listing = await anonymous.get(f"{open_door.api_url}/transfers")
            start = await anonymous.post(f"{open_door.api_url}/transfers", json=transfer_body(payer=payer))
        api_log = records(tmp_path / "api.log")

    assert quoted.status_code == 200, quoted.text
    assert (own.status_code, own.json()["currentState"]) == (200, "WAITING_FOR_QUOTE_ACCEPTANCE")
    owned_by_the_bank = f"HomeTransactionId = '{own.json()['homeTransactionId']}' AND ClientKey = 'bank'"
    assert (await stack.client.count_workflows(owned_by_the_bank)).count == 1  # MOJAFLOW_DEFAULT_CLIENT_KEY
    assert (other_clients.status_code, other_clients.json()["code"]) == (404, "transfer_not_found")  # bank1's
    assert (listing.status_code, start.status_code) == (401, 401)  # the rest of the client API: MOJAFLOW_AUTH
    warned = [(r["level"], r["logger"]) for r in api_log if r["event"].startswith("MOJAFLOW_SEND_MONEY_AUTH=none")]
    assert warned == [("warning", "mojaflow.api")]
