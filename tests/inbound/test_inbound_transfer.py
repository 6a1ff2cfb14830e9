"""Inbound transfers end to end: the SDK's calls over real HTTP, the CBS simulator's balances, a real worker."""

from __future__ import annotations

import asyncio
import gc
import time
from decimal import Decimal
from typing import Any

import httpx

from activities.core_banking import CoreBankingClient
from api.backend import InboundService
from mojaflow.database import Database
from mojaflow.inbound_models import TransferBody
from mojaflow.keys import load_secrets_ring
from mojaflow.settings import Settings
from mojaflow.temporal import inbound_workflow_id
from tests.conftest import Stack
from tests.inbound.flow import Payee, new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.transfers import wait_for_state

ZERO = Decimal("0")


async def _quote(stack: Stack, http: httpx.AsyncClient, payee: Payee, amount: str = "25", **kw: Any) -> dict[str, Any]:
    response = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee, amount, **kw))
    assert response.status_code == 200, response.text
    return response.json()


async def _reserve(stack: Stack, http: httpx.AsyncClient, payee: Payee, quote: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote))
    assert response.status_code == 200, response.text
    return response.json()


async def _notify(
    stack: Stack, http: httpx.AsyncClient, transfer_id: str, state: str | None, *, forged: bool = False, **kw: Any
) -> None:
    """The SDK's final notification, once the switch decided (recorded at the simulator's switch first, which
    MOJAFLOW_INBOUND_CONFIRM_COMMIT asks); `forged`: a notification the switch's record does not back."""
    if state in ("COMMITTED", "ABORTED") and not forged:
        await switch_records(http, stack.sdk_url, transfer_id, state)
    response = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, state, **kw)
    )
    assert response.status_code == 200, response.text


async def _wait_for_balances(
    http: httpx.AsyncClient, stack: Stack, payee: Payee, expected: tuple[Decimal, Decimal], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    seen: tuple[Decimal, Decimal] | None = None
    while time.monotonic() < deadline:
        seen = await payee.balances(http, stack.cbs_url)
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"balances never became {expected}; last {seen}")


async def test_p2p_parties_quote_transfer_committed_credits_the_payee_once(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    party = await http.get(f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}")
    assert party.status_code == 200
    quote = await _quote(stack, http, payee, "25")

    answer = await _reserve(stack, http, payee, quote)

    assert answer["transferState"] == "RESERVED"
    assert answer["homeTransactionId"].startswith("res-")
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("25"))
    transfer_id = quote["transactionId"]

    await _notify(stack, http, transfer_id, "COMMITTED")

    done = await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED", "ABORTED", "ERROR_OCCURRED"})
    assert done["currentState"] == "COMMITTED"
    assert done["direction"] == "INBOUND"
    assert done["homeTransactionId"] == answer["homeTransactionId"]
    assert done["sdkTransferId"] == transfer_id
    assert done["payer"] == {"name": "Remote Payer", "fspId": "testingtoolkitdfsp"}
    assert done["amount"] == "25" and done["currency"] == "USD"
    assert done["quote"]["quoteId"] == quote["quoteId"]
    assert "lastError" not in done
    assert await payee.balances(http, stack.cbs_url) == (Decimal("125"), ZERO)

    spec_view = (await http.get(f"{stack.backend_url}/transfers/{transfer_id}")).json()
    assert spec_view["transferState"] == "COMMITTED"
    assert spec_view["homeTransactionId"] == answer["homeTransactionId"]


async def test_aborted_notification_releases_the_credit(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "7.5")
    await _reserve(stack, http, payee, quote)
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("7.5"))

    await _notify(stack, http, quote["transactionId"], "ABORTED")

    done = await wait_for_state(http, stack.api_url, quote["transactionId"], {"COMMITTED", "ABORTED", "ERROR_OCCURRED"})
    assert done["currentState"] == "ABORTED"
    assert done["lastError"]["code"] == "transfer_aborted"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)


async def test_duplicate_post_and_duplicate_put_change_nothing(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "10")
    body = transfer_request(payee, quote)
    transfer_id = quote["transactionId"]

    first, second = await asyncio.gather(
        http.post(f"{stack.backend_url}/transfers", json=body), http.post(f"{stack.backend_url}/transfers", json=body)
    )
    third = await http.post(f"{stack.backend_url}/transfers", json=body)

    assert first.status_code == second.status_code == third.status_code == 200
    assert first.json() == second.json() == third.json()
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("10"))

    await _notify(stack, http, transfer_id, "COMMITTED")
    await _notify(stack, http, transfer_id, "COMMITTED")
    await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED"})
    await _notify(stack, http, transfer_id, "COMMITTED")  # after the run ended: still 200, no change
    await _notify(stack, http, transfer_id, "ABORTED", forged=True)
    replay = await http.post(f"{stack.backend_url}/transfers", json=body)

    assert replay.status_code == 200
    assert replay.json() == {"homeTransactionId": first.json()["homeTransactionId"], "transferState": "COMMITTED"}
    assert await payee.balances(http, stack.cbs_url) == (Decimal("110"), ZERO)
    assert (await http.get(f"{stack.api_url}/transfers/{transfer_id}")).json()["currentState"] == "COMMITTED"


async def test_aborted_then_committed_keeps_the_first_word(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "3")
    await _reserve(stack, http, payee, quote)

    await _notify(stack, http, quote["transactionId"], "ABORTED")
    await _notify(stack, http, quote["transactionId"], "COMMITTED", forged=True)

    done = await wait_for_state(http, stack.api_url, quote["transactionId"], {"COMMITTED", "ABORTED"})
    assert done["currentState"] == "ABORTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)


async def test_transfer_not_matching_its_quote_is_refused_and_nothing_reserved(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    other = await new_payee(http, stack.cbs_url)
    cases: list[tuple[dict[str, Any], str]] = []
    quote = await _quote(stack, http, payee, "25")
    cases.append((transfer_request(payee, quote, amount="26"), "amount:"))
    quote = await _quote(stack, http, payee, "25")
    cases.append((transfer_request(payee, {**quote, "transferAmount": "26"}, amount="26"), "amount:"))
    quote = await _quote(stack, http, payee, "25")
    cases.append((transfer_request(payee, quote, currency="EUR"), "currency:"))
    quote = await _quote(stack, http, payee, "25")
    cases.append((transfer_request(payee, quote, to={"idType": "MSISDN", "idValue": other.msisdn}), "to:"))
    quote = await _quote(stack, http, payee, "25")
    unknown = {**quote, "quoteId": "0f0e0d0c-0b0a-4909-8807-060504030201"}
    cases.append((transfer_request(payee, unknown), "quote.quoteId:"))

    for body, field in cases:
        response = await http.post(f"{stack.backend_url}/transfers", json=body)

        assert response.status_code == 400, response.text
        error = response.json()
        assert error["statusCode"] == "3100"
        assert field in error["message"], error
        assert payee.msisdn not in response.text and other.msisdn not in response.text
        saved = await wait_for_state(http, stack.api_url, body["transferId"], {"ABORTED"})
        assert saved["lastError"]["code"] == "quote_mismatch"
        assert "homeTransactionId" not in saved

    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)
    assert await other.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)


async def test_expired_quote_is_refused(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "5", expires_in_s=0.5)
    await asyncio.sleep(0.6)  # the quote's own clock: it must be past its expiration

    response = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote))

    assert (response.status_code, response.json()["statusCode"]) == (400, "3100")
    assert "quote.expiration" in response.json()["message"]
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)


async def test_cbs_refusal_at_reservation_is_the_fspiop_error(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "5")
    blocked = await http.patch(f"{stack.cbs_url}/_sim/accounts/{payee.account_id}", json={"status": "blocked"})
    assert blocked.status_code == 200

    response = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote))
    again = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote))

    assert response.status_code == 400
    assert response.json()["statusCode"] == "5400"
    assert again.json() == response.json()  # a duplicate POST answers the same
    saved = await wait_for_state(http, stack.api_url, quote["transactionId"], {"ABORTED"})
    assert saved["lastError"] == {
        "code": "credit_refused",
        "message": "the core banking system refused the credit (account_blocked)",
        "fspiopErrorCode": "5400",
    }
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), ZERO)


async def test_no_notification_is_reconciled_through_the_switch(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    committed = await _quote(stack, http, payee, "4", expires_in_s=3)
    aborted = await _quote(stack, http, payee, "2", expires_in_s=3)
    unknown = await _quote(stack, http, payee, "1", expires_in_s=3)
    for quote in (committed, aborted, unknown):
        await _reserve(stack, http, payee, quote)
    await http.put(f"{stack.sdk_url}/_sim/switch/{committed['transactionId']}", json={"transferState": "COMMITTED"})
    await http.put(f"{stack.sdk_url}/_sim/switch/{aborted['transactionId']}", json={"transferState": "ABORTED"})
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("7"))

    finals = {"COMMITTED", "ABORTED", "ERROR_OCCURRED"}
    one = await wait_for_state(http, stack.api_url, committed["transactionId"], finals)
    two = await wait_for_state(http, stack.api_url, aborted["transactionId"], finals)
    three = await wait_for_state(http, stack.api_url, unknown["transactionId"], finals)

    assert one["currentState"] == "COMMITTED"
    assert (two["currentState"], two["lastError"]["code"]) == ("ABORTED", "transfer_aborted")
    assert (three["currentState"], three["lastError"]["fspiopErrorCode"]) == ("ABORTED", "3208")
    assert await payee.balances(http, stack.cbs_url) == (Decimal("104"), ZERO)


async def test_error_occurred_notification_asks_the_switch_at_once(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "6")  # expires in 60 s: only the switch can end it sooner
    transfer_id = quote["transactionId"]
    await _reserve(stack, http, payee, quote)
    await http.put(f"{stack.sdk_url}/_sim/switch/{transfer_id}", json={"transferState": "RESERVED"})

    await _notify(stack, http, transfer_id, None, current_state="ERROR_OCCURRED")
    await wait_for_state(http, stack.api_url, transfer_id, {"RECONCILING"})
    # The test stack continues as new after 3 questions (MOJAFLOW_RECONCILE_CHECKS_PER_RUN): once a second run
    # exists, the switch has said RESERVED at least 3 times, and nothing was decided meanwhile.
    runs = f"WorkflowId = '{inbound_workflow_id(transfer_id)}'"
    deadline = time.monotonic() + 30
    while (await stack.client.count_workflows(runs)).count < 2:
        assert time.monotonic() < deadline, "the reconciliation never continued as new"
        await asyncio.sleep(0.1)
    assert (await http.get(f"{stack.api_url}/transfers/{transfer_id}")).json()["currentState"] == "RECONCILING"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("6"))
    await http.put(f"{stack.sdk_url}/_sim/switch/{transfer_id}", json={"transferState": "COMMITTED"})

    done = await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED", "ABORTED"})
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("106"), ZERO)


async def test_worker_killed_between_reserve_and_commit_a_new_worker_credits_once(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "12")
    transfer_id = quote["transactionId"]
    await _reserve(stack, http, payee, quote)

    stack.worker.kill()
    try:
        await _notify(stack, http, transfer_id, "COMMITTED")  # the signal waits in Temporal for a worker
        await _notify(stack, http, transfer_id, "COMMITTED")
        assert await payee.balances(http, stack.cbs_url) == (Decimal("100"), Decimal("12"))
    finally:
        stack.worker = stack.worker_process().start()

    done = await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED", "ABORTED", "ERROR_OCCURRED"})
    assert done["currentState"] == "COMMITTED"
    assert await payee.balances(http, stack.cbs_url) == (Decimal("112"), ZERO)


async def test_inbound_transfers_are_listed_and_searchable(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "8")
    answer = await _reserve(stack, http, payee, quote)
    transfer_id = quote["transactionId"]

    listed = await http.get(
        f"{stack.api_url}/transfers",
        params={"direction": "INBOUND", "homeTransactionId": answer["homeTransactionId"]},
    )
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["transferId"] for item in items] == [transfer_id]
    assert items[0]["currentState"] == "RESERVED"

    handle = stack.client.get_workflow_handle(inbound_workflow_id(transfer_id))
    attributes = (await handle.describe()).typed_search_attributes
    decoded = {pair.key.name: pair.value for pair in attributes}
    assert decoded["Direction"] == "INBOUND"
    assert decoded["SdkTransferId"] == transfer_id
    assert decoded["HomeTransactionId"] == answer["homeTransactionId"]
    assert decoded["MojaflowState"] == "RESERVED"

    await _notify(stack, http, transfer_id, "COMMITTED")
    await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED"})
    committed = await http.get(f"{stack.api_url}/transfers", params={"direction": "INBOUND", "state": "COMMITTED"})
    assert transfer_id in [item["transferId"] for item in committed.json()["items"]]


async def test_no_party_id_in_clear_in_the_temporal_history(stack: Stack, http: httpx.AsyncClient) -> None:
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "9")
    transfer_id = quote["transactionId"]
    await _reserve(stack, http, payee, quote)
    await _notify(stack, http, transfer_id, "COMMITTED")
    await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED"})
    blocked = await new_payee(http, stack.cbs_url)
    refused_quote = await _quote(stack, http, blocked, "9")
    await http.patch(f"{stack.cbs_url}/_sim/accounts/{blocked.account_id}", json={"status": "blocked"})
    await http.post(f"{stack.backend_url}/transfers", json=transfer_request(blocked, refused_quote))

    for workflow_id, party_id in (
        (inbound_workflow_id(transfer_id), payee.msisdn),
        (inbound_workflow_id(refused_quote["transactionId"]), blocked.msisdn),
    ):
        history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
        exported = history.to_json()  # as `temporal workflow show --output json`: payloads base64-encoded
        raw = b"".join(event.SerializeToString() for event in history.events)  # payload bytes as stored
        assert workflow_id in exported and workflow_id.encode() in raw  # the search does see plain text
        assert len(history.events) > 10
        for secret in (party_id, "25611111111", "Remote Payer", "Inbound Payee"):
            assert secret not in exported
            assert secret.encode() not in raw


async def test_a_duplicate_post_after_the_end_leaves_no_unhandled_future(stack: Stack, http: httpx.AsyncClient) -> None:
    """The SDK's retry of a finished transfer finds the run ended (the start is refused): it is answered from our
    database, and the refused start's error is read, not left on a future asyncio would log at collection
    ("Future exception was never retrieved"). In process, so the collection can be forced and observed."""
    payee = await new_payee(http, stack.cbs_url)
    quote = await _quote(stack, http, payee, "2")
    body = transfer_request(payee, quote)
    await _reserve(stack, http, payee, quote)
    await _notify(stack, http, quote["transactionId"], "COMMITTED")
    await wait_for_state(http, stack.api_url, quote["transactionId"], {"COMMITTED"})
    settings = Settings(data_dir=stack.data_dir)
    database = Database(settings.resolved_database_url, secrets=load_secrets_ring(settings))  # the API's, as it is
    unhandled: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    try:
        async with httpx.AsyncClient(base_url=stack.cbs_url) as cbs:
            service = InboundService(stack.client, database, CoreBankingClient(cbs), settings)
            answer = await service.transfer(TransferBody.model_validate(body))
        del service
        gc.collect()
        await asyncio.sleep(0)  # let asyncio report anything collected
    finally:
        loop.set_exception_handler(previous)
        await database.close()

    assert answer["transferState"] == "COMMITTED"
    assert unhandled == []
