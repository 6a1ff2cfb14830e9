"""Ten transfers to one payee at once through mojaflow. SDK 18.0.2 breaks when two party lookups for one payee
arrive at the same moment (its pub/sub dies until restarted); mojaflow serialises them (activities/payee_locks.py),
so all ten complete and the SDK still answers normally afterwards."""

from __future__ import annotations

import asyncio

import httpx

from e2e.tests.conftest import E2E
from e2e.tests.flows import balances, send, wait_until
from tests.support.transfers import new_payer, transfer_body

PAYEE = "25633300010"


async def test_ten_concurrent_transfers_to_one_payee_all_complete(e2e: E2E, http: httpx.AsyncClient) -> None:
    payers = [await new_payer(http, e2e.stack.cbs_url) for _ in range(10)]

    started = await asyncio.gather(
        *(
            send(e2e, http, transfer_body(payer=payer, payee=PAYEE, amount="7"), respond_async=True)
            for payer, _ in payers
        )
    )
    done = await asyncio.gather(
        *(wait_until(http, e2e, t["transferId"], {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}) for t in started)
    )

    assert [t["currentState"] for t in done] == ["COMPLETED"] * 10, [t.get("lastError") for t in done]
    assert [await balances(e2e, http, account_id) for _, account_id in payers] == [("993.00", "0.00")] * 10
    payer, _ = await new_payer(http, e2e.stack.cbs_url)
    after = await send(e2e, http, transfer_body(payer=payer, payee=PAYEE, amount="7"))
    assert after["currentState"] == "COMPLETED"  # the SDK's party lookups still work (broken, they time out)
    assert "uncaughtException" not in e2e.mojaloop.sdk.log_path.read_text(errors="replace")
