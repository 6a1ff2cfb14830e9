"""The corpus's paths of `WebhookDeliveryWorkflow`: a subscription made over our client API, a transfer driven as
the CBS or the SDK would, the receiver simulator's fault switch (`PUT /_sim/faults`) picking the path; each driver
waits until the delivery workflows of the transfer's events have closed and returns the id of the one that holds
its first event (RECEIVED's: the API leaves it unclaimed, and the worker's round that the transfer's first save
wakes claims it and dispatches it with that save's).

`LEGACY_WEBHOOK_PATHS` were recorded before batches, when one workflow held one transfer's events to one subscriber
and waited for the later ones: runs of that version may still be deployed, so their files stay and replay, but no
driver makes them any more.

Each path subscribes a client key of its own (outbound) or the bank's (inbound transfers belong to
`MOJAFLOW_DEFAULT_CLIENT_KEY`), and deletes its subscription once its workflow has closed, so that no other path's
transfer is delivered to it. Every wait is for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from mojaflow.webhook_models import EVENT_TYPE
from tests.support.transfers import money_movement_headers, new_payer, set_fault, transfer_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.histories.paths import Driver

__all__ = ["LEGACY_WEBHOOK_PATHS", "WEBHOOK_PATHS"]

BANK = "bank"  # MOJAFLOW_DEFAULT_CLIENT_KEY's default: the owner of inbound transfers' events
AUTO_EVENTS = 6  # RECEIVED, RESOLVING_PARTY, REQUESTING_QUOTE, HOLDING_FUNDS, TRANSFERRING, COMPLETED


async def _poll(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30) -> Any:
    """`check()`'s first truthy answer; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (found := await check()):
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)
    return found


@asynccontextmanager
async def _subscription(d: Driver, client_key: str) -> AsyncIterator[str]:
    """A subscription of `client_key` to the receiver (API-key auth, every state); deleted on exit."""
    assert d.receiver_url, "the corpus stack runs a webhook receiver (tests/histories/record.py)"
    body = {
        "url": f"{d.receiver_url}/hooks/{client_key}",
        "eventTypes": [EVENT_TYPE],
        "auth": {"type": "api_keys", "headers": {"X-Corpus-Key": uuid.uuid4().hex}},
    }
    url = f"{d.stack.api_url}/webhooks/subscriptions"
    response = await d.http.post(url, json=body, headers={"client_key": client_key})
    assert response.status_code == 201, response.text
    subscription_id = str(response.json()["subscriptionId"])
    try:
        yield subscription_id
    finally:
        deleted = await d.http.delete(f"{url}/{subscription_id}", headers={"client_key": client_key})
        assert deleted.status_code in (204, 404), deleted.text  # 404: the path deleted it itself


@asynccontextmanager
async def _receiver_answers(d: Driver, status: int) -> AsyncIterator[None]:
    """The receiver answers `status` to every webhook until the block exits (or `_receiver_recovers`)."""
    (await d.http.put(f"{d.receiver_url}/_sim/faults", json={"status": status})).raise_for_status()
    try:
        yield
    finally:
        await _receiver_recovers(d)


async def _receiver_recovers(d: Driver) -> None:
    (await d.http.delete(f"{d.receiver_url}/_sim/faults")).raise_for_status()


async def _auto_transfer(d: Driver, client_key: str, **fault: Any) -> str:
    """An auto-accepted outbound transfer of `client_key` (`Prefer: respond-async`) that completes; its id."""
    payer, _ = await new_payer(d.http, d.stack.cbs_url)
    body = transfer_body(payer=payer)
    if fault:
        await set_fault(d.http, d.stack.sdk_url, body["homeTransactionId"], **fault)
    headers = {**money_movement_headers(client_key=client_key), "Prefer": "respond-async"}
    response = await d.http.post(f"{d.stack.api_url}/transfers", json=body, headers=headers)
    assert response.status_code == 202, response.text
    transfer_id = str(response.json()["transferId"])
    await d.state(transfer_id, "COMPLETED")
    return transfer_id


async def _deliveries(d: Driver, client_key: str, transfer_id: str) -> list[dict[str, Any]]:
    """The transfer's deliveries as `GET /webhooks/deliveries` lists them, oldest event first."""
    url = f"{d.stack.api_url}/webhooks/deliveries"
    response = await d.http.get(url, params={"transferId": transfer_id}, headers={"client_key": client_key})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


async def _all_failed_once(d: Driver, client_key: str, transfer_id: str, count: int) -> list[dict[str, Any]]:
    """Once each of the transfer's `count` deliveries has had its first attempt (failed) and waits for its next."""

    async def failed_once() -> list[dict[str, Any]] | None:
        items = await _deliveries(d, client_key, transfer_id)
        waiting = [each for each in items if each["status"] == "DELIVERING" and each["attempts"] >= 1]
        return items if len(items) == count and len(waiting) == count else None

    items: list[dict[str, Any]] = await _poll(failed_once, f"{count} deliveries of {transfer_id} failed once")
    return items


async def _closed(d: Driver, workflow_id: str, timeout_s: float = 60) -> str:
    """Once the delivery workflow's run has closed (completed: a delivery workflow never fails)."""
    handle = d.stack.client.get_workflow_handle(workflow_id)

    async def closed() -> bool:
        try:
            return bool((await handle.describe()).status != WorkflowExecutionStatus.RUNNING)
        except RPCError as error:  # not started yet: the dispatcher lingers a moment
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return False

    await _poll(closed, f"{workflow_id} closed", timeout_s)
    status = (await handle.describe()).status
    assert status == WorkflowExecutionStatus.COMPLETED, f"{workflow_id}: {status}"
    return workflow_id


# -- the paths ---------------------------------------------------------------------------------------------------


async def _workflows_closed(d: Driver, client_key: str, transfer_id: str, count: int) -> str:
    """Once the workflows holding the transfer's `count` deliveries have all closed: the one of its first event."""

    async def dispatched() -> list[str] | None:
        items = await _deliveries(d, client_key, transfer_id)
        ids = [each["workflowId"] for each in items]
        return ids if len(items) == count and all(ids) else None

    workflow_ids: list[str] = await _poll(dispatched, f"{count} deliveries of {transfer_id} dispatched")
    for workflow_id in dict.fromkeys(workflow_ids):
        await _closed(d, workflow_id)
    return workflow_ids[0]


async def delivered(d: Driver) -> str:
    """An auto transfer's six events, each delivered on its first attempt (the receiver answers 200)."""
    client_key = f"hok{uuid.uuid4().hex[:7]}"
    async with _subscription(d, client_key) as subscription_id:
        transfer_id = await _auto_transfer(d, client_key)
        workflow_id = await _workflows_closed(d, client_key, transfer_id, AUTO_EVENTS)
    assert subscription_id in workflow_id
    return workflow_id


async def receiver_down_retried(d: Driver) -> str:
    """The receiver answers 500 to the first attempt of every event; once it is back, each delivery is retried by
    hand (`POST /webhooks/deliveries/{id}/retry`: the `retry_now` update of its workflow) and delivered, long before
    its next hourly attempt."""
    client_key = f"hok{uuid.uuid4().hex[:7]}"
    async with _subscription(d, client_key), _receiver_answers(d, 500):
        transfer_id = await _auto_transfer(d, client_key)
        items = await _all_failed_once(d, client_key, transfer_id, AUTO_EVENTS)
        await _receiver_recovers(d)
        for item in items:
            url = f"{d.stack.api_url}/webhooks/deliveries/{item['deliveryId']}/retry"
            response = await d.http.post(url, headers={"client_key": client_key})
            assert response.status_code == 202, response.text
        return await _workflows_closed(d, client_key, transfer_id, AUTO_EVENTS)


async def subscription_deleted(d: Driver) -> str:
    """The receiver answers 503 to every attempt; the subscription is deleted while the deliveries wait for their
    next hourly attempt: the API cancels their workflows, whose open deliveries end CANCELLED."""
    client_key = f"hok{uuid.uuid4().hex[:7]}"
    async with _subscription(d, client_key) as subscription_id, _receiver_answers(d, 503):
        transfer_id = await _auto_transfer(d, client_key)
        items = await _all_failed_once(d, client_key, transfer_id, AUTO_EVENTS)
        url = f"{d.stack.api_url}/webhooks/subscriptions/{subscription_id}"
        response = await d.http.delete(url, headers={"client_key": client_key})
        assert response.status_code == 204, response.text
        for workflow_id in dict.fromkeys(each["workflowId"] for each in items):
            await _closed(d, workflow_id)
        return str(items[0]["workflowId"])


# By file name (`<name>.json`), how to drive each path.
WEBHOOK_PATHS: dict[str, Callable[[Driver], Awaitable[str]]] = {
    "webhook_batch_delivered": delivered,
    "webhook_batch_receiver_down_retried": receiver_down_retried,
    "webhook_batch_subscription_deleted": subscription_deleted,
}
# Recorded before batches (see above): replayed, never re-recorded.
LEGACY_WEBHOOK_PATHS = (
    "webhook_delivered",
    "webhook_receiver_down_retried",
    "webhook_subscription_deleted",
    "webhook_later_event_after_idle",
)
