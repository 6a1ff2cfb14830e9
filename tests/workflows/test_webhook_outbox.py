"""Exactly one webhook event per state change (the outbox: mojaflow/webhook_outbox.py), on a real stack.

An API and a worker of their own (a sibling of the session stack with its own data dir, so its database and its
subscriptions are this module's alone; its own deliveries' task queue; the sweeper every second), the session's
Temporal server and simulators, and a real webhook receiver (simulators/webhook_receiver.py).

What is checked against something other than our outbox's own words: the states a transfer goes through are its
path as README documents it; delivery workflows are found on the Temporal server; deliveries are counted at the
receiver.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from mojaflow.database import Database
from mojaflow.models import Direction, TransferRecord, TransferState, TransferView
from mojaflow.temporal import WEBHOOK_EVENT_IDS, WEBHOOK_STATUS, WEBHOOK_SUBSCRIPTION_ID, WEBHOOK_TRANSFER_IDS, connect
from mojaflow.webhook_models import EVENT_TYPE, DeliveryStatus, PaymentStatus, batch_workflow_id, event_id
from mojaflow.webhook_outbox import Outbox
from mojaflow.webhook_tables import webhook_deliveries, webhook_events
from tests.conftest import Stack
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.tcp_proxy import TcpProxy
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state
from tests.support.webhook_peers import webhook_receiver
from tests.support.workers import settings_of
from worker import build_worker, worker_resources
from workflows.webhook_delivery import WebhookDeliveryWorkflow

INBOUND_PRODUCT, INBOUND_CHANNEL = "business_payments", "bank_bos"  # not the defaults: the settings are used
AUTO_PATH = ["RECEIVED", "RESOLVING_PARTY", "REQUESTING_QUOTE", "HOLDING_FUNDS", "TRANSFERRING", "COMPLETED"]
MANUAL_PATH = [
    "RECEIVED",
    "RESOLVING_PARTY",
    "WAITING_FOR_PARTY_ACCEPTANCE",
    "REQUESTING_QUOTE",
    "WAITING_FOR_QUOTE_ACCEPTANCE",
    "HOLDING_FUNDS",
    "TRANSFERRING",
    "COMPLETED",
]
INBOUND_PATH = ["RECEIVED", "RESERVED", "COMMITTED"]
PAYMENT_STATUS_FIELDS = {field.alias or name for name, field in PaymentStatus.model_fields.items()}


@dataclass
class Hooks:
    stack: Stack
    receiver_url: str
    database: Database


@pytest.fixture(scope="module")
def hooks_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    base = tmp_path_factory.mktemp("webhook-outbox")
    receiver = webhook_receiver(base / "receiver")
    own = {
        "MOJAFLOW_DATA_DIR": str(base / "data"),
        "MOJAFLOW_WEBHOOK_TASK_QUEUE": f"tests-hooks-{uuid.uuid4()}",
        "MOJAFLOW_WEBHOOK_SWEEP_INTERVAL_S": "1",
        "MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "MOJAFLOW_INBOUND_PRODUCT": INBOUND_PRODUCT,
        "MOJAFLOW_INBOUND_PAYMENT_CHANNEL": INBOUND_CHANNEL,
    }
    with receiver.process, stack.sibling(base, **own) as sibling:
        try:
            yield sibling, receiver.url
        finally:
            sibling.worker.stop()  # a test may have replaced the sibling's own


@pytest.fixture
async def hooks(hooks_stack: tuple[Stack, str]) -> AsyncIterator[Hooks]:
    stack, receiver_url = hooks_stack
    database = Database(settings_of(stack.env).resolved_database_url)
    try:
        yield Hooks(stack, receiver_url, database)
    finally:
        await database.close()


def _client_key() -> str:
    return f"c{uuid.uuid4().hex[:9]}"


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    path: str  # at the receiver: tells the subscriptions' deliveries apart
    states: frozenset[str] | None  # None: every state


async def _subscribe(
    http: httpx.AsyncClient, hooks: Hooks, client_key: str, *, states: list[str] | None = None, enabled: bool = True
) -> Subscription:
    path = f"hook-{uuid.uuid4().hex[:12]}"
    body: dict[str, Any] = {
        "url": f"{hooks.receiver_url}/{path}",
        "eventTypes": [EVENT_TYPE],
        "auth": {"type": "api_keys", "headers": {"X-Hook-Test": uuid.uuid4().hex}},
        "enabled": enabled,
    }
    if states is not None:
        body["states"] = states
    response = await http.post(
        f"{hooks.stack.api_url}/webhooks/subscriptions", json=body, headers={"client_key": client_key}
    )
    assert response.status_code == 201, response.text
    return Subscription(response.json()["subscriptionId"], path, frozenset(states) if states is not None else None)


async def _events(hooks: Hooks, transfer_id: str) -> list[Any]:
    query = (
        select(webhook_events).where(webhook_events.c.transfer_id == transfer_id).order_by(webhook_events.c.sequence)
    )
    async with hooks.database.engine.connect() as connection:
        return list((await connection.execute(query)).all())


async def _deliveries(hooks: Hooks, transfer_id: str) -> list[Any]:
    query = select(webhook_deliveries).where(webhook_deliveries.c.transfer_id == transfer_id)
    async with hooks.database.engine.connect() as connection:
        return list((await connection.execute(query)).all())


def _assert_one_event_per_state(events: list[Any], transfer_id: str, states: list[str], secrets: list[str]) -> None:
    """One event per state, in order of sequence from 1, each state's previous the state before; ids from
    (transferId, sequence); no personal data."""
    assert [event.data["currentState"] for event in events] == states
    assert [event.sequence for event in events] == list(range(1, len(states) + 1))
    assert [event.data["previousState"] for event in events] == [None, *states[:-1]]
    for event in events:
        assert event.event_id == event_id(transfer_id, event.sequence)
        assert event.event_type == EVENT_TYPE
        assert event.data["transferId"] == transfer_id and event.data["sequence"] == event.sequence
        assert set(event.data) <= PAYMENT_STATUS_FIELDS
        PaymentStatus.model_validate(event.data)
        text = json.dumps(event.data)
        assert not [secret for secret in secrets if secret in text], text
    occurred = [event.occurred_at for event in events]
    assert occurred == sorted(occurred)


async def _settled_rows_and_workflows(
    hooks: Hooks, transfer_id: str, timeout_s: float = 60
) -> tuple[list[Any], dict[str, Any]]:
    """The transfer's delivery rows once each is DELIVERED with its workflow's id stored, and the delivery workflows
    that hold any of its deliveries on the server (found by `WebhookTransferIds`, a list: `=` is membership), by id,
    once each row's workflow is among them and every one of them is closed (a batch closes once it is settled)."""
    query = f"WorkflowType = 'WebhookDeliveryWorkflow' AND WebhookTransferIds = '{transfer_id}'"
    deadline = time.monotonic() + timeout_s
    rows: list[Any] = []
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = await _deliveries(hooks, transfer_id)
        found = {execution.id: execution async for execution in hooks.stack.client.list_workflows(query)}
        settled = all(row.status == DeliveryStatus.DELIVERED.value and row.workflow_id for row in rows)
        closed = all(execution.status != WorkflowExecutionStatus.RUNNING for execution in found.values())
        if settled and closed and {row.workflow_id for row in rows} <= found.keys():
            return rows, found
        await asyncio.sleep(0.2)
    seen = [(row.event_id, row.status, row.workflow_id) for row in rows]
    raise AssertionError(f"deliveries of {transfer_id}: {seen}; workflows {[(e.id, e.status) for e in found.values()]}")


async def _assert_not_started(client: Client, transfer_id: str, workflow_ids: list[str]) -> None:
    """None of these delivery workflows exists, and none holds any of the transfer's deliveries."""
    for workflow_id in workflow_ids:
        with pytest.raises(RPCError) as missing:
            await client.get_workflow_handle(workflow_id).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND, workflow_id
    query = f"WorkflowType = 'WebhookDeliveryWorkflow' AND WebhookTransferIds = '{transfer_id}'"
    assert [execution.id async for execution in client.list_workflows(query)] == []


async def _received(http: httpx.AsyncClient, hooks: Hooks, transfer_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = await http.get(f"{hooks.receiver_url}/_sim/events", params={"transferId": transfer_id})
        events = response.json()["events"]
        if len(events) >= count:
            return events
        await asyncio.sleep(0.2)
    raise AssertionError(f"the receiver got {len(events)} events of {transfer_id}, {count} expected")


async def _assert_delivered_once_each(
    http: httpx.AsyncClient,
    hooks: Hooks,
    transfer_id: str,
    events: list[Any],
    subscriptions: list[Subscription],
    *,
    posts_may_repeat: bool = False,
) -> None:
    """One delivery row and one POST at the receiver per (event, subscription that wants it), and none else; each
    delivered by a workflow the server knows. `posts_may_repeat`: a worker died, maybe during a POST, which its
    successor then makes again with the same event id (the delivery is at least once)."""
    wanted = [
        (event.event_id, sub)
        for event in events
        for sub in subscriptions
        if sub.states is None or event.data["currentState"] in sub.states
    ]
    deliveries = await _deliveries(hooks, transfer_id)
    assert sorted((row.event_id, row.subscription_id) for row in deliveries) == sorted(
        (event, sub.subscription_id) for event, sub in wanted
    )
    # Deliveries travel in batches (one subscriber's, of any transfers), so a transfer's events may be spread over
    # several workflows: each row names the one that holds its cycle, a closed one, of its subscriber, that lists
    # the transfer and the event and reports the delivery DELIVERED. Any workflow holding one of the transfer's
    # deliveries (a sweeper's second dispatch, say) is one of a subscriber that wants the transfer's events.
    rows, workflows = await _settled_rows_and_workflows(hooks, transfer_id)
    subscribers = {sub.subscription_id for _, sub in wanted}
    for workflow in workflows.values():
        attributes = workflow.typed_search_attributes
        assert workflow.status == WorkflowExecutionStatus.COMPLETED, (workflow.id, workflow.status)
        assert attributes.get(WEBHOOK_SUBSCRIPTION_ID) in subscribers, workflow.id
        assert transfer_id in attributes.get(WEBHOOK_TRANSFER_IDS), workflow.id
    for row in rows:
        holder = workflows[row.workflow_id]
        assert holder.typed_search_attributes.get(WEBHOOK_SUBSCRIPTION_ID) == row.subscription_id, row.workflow_id
        assert row.event_id in holder.typed_search_attributes.get(WEBHOOK_EVENT_IDS), row.workflow_id
        assert holder.typed_search_attributes.get(WEBHOOK_STATUS) == DeliveryStatus.DELIVERED.value, row.workflow_id
        handle = hooks.stack.client.get_workflow_handle_for(WebhookDeliveryWorkflow.run, row.workflow_id)
        outcome = await handle.result()
        summary = outcome.of(row.delivery_id)
        assert (outcome.subscription_id, summary.cycle, summary.status) == (
            row.subscription_id, row.cycle, DeliveryStatus.DELIVERED,
        )  # fmt: skip
    received = [(item["eventId"], item["path"]) for item in await _received(http, hooks, transfer_id, len(wanted))]
    expected = [(event, f"/{sub.path}") for event, sub in wanted]
    if posts_may_repeat:
        assert set(received) == set(expected)
    else:
        assert sorted(received) == sorted(expected)
    assert all(row.dispatched_at is not None for row in await _deliveries(hooks, transfer_id))


async def test_every_state_of_an_auto_outbound_transfer_is_one_event(hooks: Hooks, http: httpx.AsyncClient) -> None:
    client_key = _client_key()
    every = await _subscribe(http, hooks, client_key)
    payer, account_id = await new_payer(http, hooks.stack.cbs_url)
    headers = money_movement_headers(client_key=client_key, payment_channel="atm")
    response = await http.post(f"{hooks.stack.api_url}/transfers", json=transfer_body(payer=payer), headers=headers)
    assert response.status_code == 201, response.text
    transfer_id = response.json()["transferId"]
    assert response.json()["currentState"] == "COMPLETED"

    events = await _events(hooks, transfer_id)
    _assert_one_event_per_state(events, transfer_id, AUTO_PATH, [payer, account_id, "Test Payer", "Test Payee"])
    assert {(e.client_key, e.product, e.payment_channel) for e in events} == {(client_key, "retail_payments", "atm")}
    await _assert_delivered_once_each(http, hooks, transfer_id, events, [every])


async def test_a_manual_transfer_with_several_subscriptions_one_delivery_each_wanted(
    hooks: Hooks, http: httpx.AsyncClient
) -> None:
    """Every subscription of the owner that wants a state gets its delivery: a states filter narrows it; a disabled
    subscription and another client's get none."""
    client_key = _client_key()
    every = await _subscribe(http, hooks, client_key)
    waits = await _subscribe(http, hooks, client_key, states=["WAITING_FOR_QUOTE_ACCEPTANCE", "COMPLETED"])
    await _subscribe(http, hooks, client_key, enabled=False)
    await _subscribe(http, hooks, _client_key())
    payer, account_id = await new_payer(http, hooks.stack.cbs_url)
    headers = money_movement_headers(client_key=client_key)
    body = transfer_body(payer=payer, autoAcceptParty=False, autoAcceptQuote=False)
    started = await http.post(f"{hooks.stack.api_url}/transfers", json=body, headers=headers)
    assert started.status_code == 201 and started.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    transfer_id = started.json()["transferId"]
    for decision, reached in (
        ({"acceptParty": True}, "WAITING_FOR_QUOTE_ACCEPTANCE"),
        ({"acceptQuote": True}, "COMPLETED"),
    ):
        decided = await http.put(
            f"{hooks.stack.api_url}/transfers/{transfer_id}", json=decision,
            headers=money_movement_headers(client_key=client_key),
        )  # fmt: skip
        assert decided.status_code == 200 and decided.json()["currentState"] == reached, decided.text

    events = await _events(hooks, transfer_id)
    _assert_one_event_per_state(events, transfer_id, MANUAL_PATH, [payer, account_id, "Test Payer", "Test Payee"])
    await _assert_delivered_once_each(http, hooks, transfer_id, events, [every, waits])
    assert (
        len([row for row in await _deliveries(hooks, transfer_id) if row.subscription_id == waits.subscription_id]) == 2
    )


async def test_every_state_of_an_inbound_transfer_is_one_event_of_the_bank(
    hooks: Hooks, http: httpx.AsyncClient
) -> None:
    """Inbound transfers belong to MOJAFLOW_DEFAULT_CLIENT_KEY; their product and payment channel are the
    MOJAFLOW_INBOUND_* settings."""
    owner = settings_of(hooks.stack.env).default_client_key
    every = await _subscribe(http, hooks, owner)
    payee = await new_payee(http, hooks.stack.cbs_url)
    quote = await http.post(f"{hooks.stack.backend_url}/quoterequests", json=quote_request(payee, "5"))
    assert quote.status_code == 200, quote.text
    transfer_id = quote.json()["transactionId"]
    reserved = await http.post(f"{hooks.stack.backend_url}/transfers", json=transfer_request(payee, quote.json()))
    assert reserved.status_code == 200 and reserved.json()["transferState"] == "RESERVED", reserved.text
    await switch_records(http, hooks.stack.sdk_url, transfer_id, "COMMITTED")
    notified = await http.put(
        f"{hooks.stack.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
    )
    assert notified.status_code == 200, notified.text
    await wait_for_state(http, hooks.stack.api_url, transfer_id, {"COMMITTED"})

    events = await _events(hooks, transfer_id)
    personal = [payee.msisdn, payee.account_id, "25611111111", "Inbound Payee", "Remote Payer"]
    _assert_one_event_per_state(events, transfer_id, INBOUND_PATH, personal)
    assert {e.data["direction"] for e in events} == {Direction.INBOUND.value}
    assert {(e.client_key, e.product, e.payment_channel) for e in events} == {(owner, INBOUND_PRODUCT, INBOUND_CHANNEL)}
    await _assert_delivered_once_each(http, hooks, transfer_id, events, [every])


async def test_a_rerun_of_a_save_writes_nothing_and_starts_what_was_left(hooks: Hooks, http: httpx.AsyncClient) -> None:
    """A worker's save that committed and died before starting its deliveries (the database's write alone, as
    a dispatching writer makes it: claimed), then its re-run (same revision, as the local activity's retry does):
    no second event or delivery, the first write's occurredAt kept, the delivery started once; a third run starts
    nothing more. No sweeper or other dispatcher meanwhile: the worker is stopped."""
    client_key = _client_key()
    every = await _subscribe(http, hooks, client_key)
    settings = settings_of(hooks.stack.env)
    transfer_id = str(uuid.uuid4())
    record = _state(transfer_id, client_key, TransferState.REQUESTING_QUOTE, 2, TransferState.RESOLVING_PARTY)
    hooks.stack.worker.stop()
    client = await connect(settings)
    try:
        assert (await hooks.database.save_transfer_with_event(record, dispatching=True)).applied  # then "died"
        [written] = await _events(hooks, transfer_id)
        [left] = await _deliveries(hooks, transfer_id)
        assert written.sequence == 3 and written.event_id == event_id(transfer_id, 3)
        assert written.data["previousState"] == "RESOLVING_PARTY" and written.data["currentState"] == "REQUESTING_QUOTE"
        assert left.dispatched_at is None and left.subscription_id == every.subscription_id
        # Claimed: it names the batch it would open, named after it; none is on the server, nor any of the transfer's.
        workflow_id = batch_workflow_id(left.event_id, left.subscription_id, left.cycle)
        assert left.workflow_id == workflow_id
        await _assert_not_started(client, transfer_id, [workflow_id])

        outbox = Outbox(hooks.database, client, settings)
        assert not await outbox.save(record)  # not newer: the state upsert did nothing
        assert not await outbox.save(record)

        assert [(e.event_id, e.occurred_at) for e in await _events(hooks, transfer_id)] == [
            (written.event_id, written.occurred_at)
        ]
        [started] = await _deliveries(hooks, transfer_id)
        assert started.delivery_id == left.delivery_id and started.dispatched_at is not None
        assert started.workflow_id == workflow_id
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.workflow_type == "WebhookDeliveryWorkflow"
        assert description.task_queue == settings.webhook_task_queue
    finally:
        hooks.stack.worker = hooks.stack.worker_process().start()
    await _assert_delivered_once_each(http, hooks, transfer_id, [written], [every])


async def test_the_apis_deliveries_travel_in_a_workers_next_round(hooks: Hooks, http: httpx.AsyncClient) -> None:
    """The client API saves RECEIVED with its delivery unclaimed: it does not dispatch. A worker's dispatcher
    claims that delivery in its next round, brought on by another transfer's save: one batch holds both transfers'
    deliveries. Nothing waited for the first transfer's first save in a worker, and no sweeper ran: the stack's
    worker is stopped, and this worker's sweeper is not started. Each delivered once."""
    client_key = _client_key()
    every = await _subscribe(http, hooks, client_key)
    settings = settings_of(hooks.stack.env)
    from_api, from_worker = str(uuid.uuid4()), str(uuid.uuid4())
    hooks.stack.worker.stop()
    client = await connect(settings)
    try:
        await Outbox(hooks.database, None, settings).save(_state(from_api, client_key, TransferState.RECEIVED, 0, None))
        [unclaimed] = await _deliveries(hooks, from_api)
        assert (unclaimed.workflow_id, unclaimed.dispatched_at) == (None, None)

        outbox = Outbox(hooks.database, client, settings)
        try:
            await outbox.save(_state(from_worker, client_key, TransferState.RESOLVING_PARTY, 1, TransferState.RECEIVED))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = [row for transfer in (from_api, from_worker) for row in await _deliveries(hooks, transfer)]
                if all(row.dispatched_at is not None for row in rows):
                    break
                await asyncio.sleep(0.05)
        finally:
            await outbox.aclose()
        [api_row], [worker_row] = await _deliveries(hooks, from_api), await _deliveries(hooks, from_worker)
        assert api_row.dispatched_at is not None, "the worker's round never claimed the API's delivery"
        assert api_row.workflow_id == worker_row.workflow_id  # one batch
        description = await client.get_workflow_handle(api_row.workflow_id).describe()
        assert set(description.typed_search_attributes.get(WEBHOOK_TRANSFER_IDS) or []) == {from_api, from_worker}
    finally:
        hooks.stack.worker = hooks.stack.worker_process().start()
    for transfer_id in (from_api, from_worker):
        await _assert_delivered_once_each(http, hooks, transfer_id, await _events(hooks, transfer_id), [every])


def _state(
    transfer_id: str, client_key: str, state: TransferState, revision: int, previous: TransferState | None
) -> TransferRecord:
    """A state of an outbound transfer, as the API (revision 0, RECEIVED) or a worker saves it."""
    view = TransferView(
        transfer_id=transfer_id, direction=Direction.OUTBOUND, home_transaction_id=f"home-{transfer_id}",
        current_state=state, currency="USD", amount="12",
    )  # fmt: skip
    return TransferRecord(
        view=view, revision=revision, workflow_id=f"wf-{transfer_id}", client_key=client_key,
        previous_state=previous, product="retail_payments", payment_channel="pos",
    )  # fmt: skip


async def test_a_crash_between_the_commit_and_the_start_is_swept_up(hooks: Hooks, http: httpx.AsyncClient) -> None:
    """The worker exits right after a save's commit, before dispatching its delivery (the injected crash point: a
    random kill almost never lands there): its first save, so no round of its dispatcher came to claim RECEIVED's
    delivery, which the API left unclaimed. A new worker's sweeper dispatches both; the transfer goes on; exactly
    one event per state, each delivered (at least once: the worker may have died during a POST) by a workflow that
    holds it."""
    stack = hooks.stack
    client_key = _client_key()
    every = await _subscribe(http, hooks, client_key)
    stack.worker.stop()
    crashing_env = {  # its sweeper stays out of the way: it could dispatch RECEIVED's delivery before the crash
        **stack.env, "MOJAFLOW_TEST_CRASH_AFTER_OUTBOX_COMMIT": "true", "MOJAFLOW_WEBHOOK_SWEEP_INTERVAL_S": "3600",
    }  # fmt: skip
    crashing = replace(stack, env=crashing_env).worker_process()
    crashing.start()
    try:
        payer, account_id = await new_payer(http, stack.cbs_url)
        headers = {**money_movement_headers(client_key=client_key), "Prefer": "respond-async"}
        response = await http.post(f"{stack.api_url}/transfers", json=transfer_body(payer=payer), headers=headers)
        assert response.status_code == 202, response.text
        transfer_id = response.json()["transferId"]
        deadline = time.monotonic() + 30
        while crashing.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not crashing.running, "the worker never reached the crash point"
        assert "exiting between the outbox's commit and its dispatch" in crashing.log_tail()
    finally:
        crashing.stop()

    events = await _events(hooks, transfer_id)
    assert [e.data["currentState"] for e in events] == ["RECEIVED", "RESOLVING_PARTY"]  # committed, then died
    left = sorted(await _deliveries(hooks, transfer_id), key=lambda row: row.created_at)  # RECEIVED's first
    batches = [batch_workflow_id(row.event_id, every.subscription_id, row.cycle) for row in left]
    # RECEIVED's unclaimed (the API does not dispatch), the save's claimed by the worker that died; neither dispatched
    assert [(row.dispatched_at, row.workflow_id) for row in left] == [(None, None), (None, batches[1])]
    # and no batch of either was started (one is named after its first delivery)
    await _assert_not_started(stack.client, transfer_id, batches)

    # A new worker sweeps at once what is older than the sweep interval (1 s here), before its replay of the
    # interrupted save could dispatch them: it starts once they are that old.
    written = max(row.created_at.replace(tzinfo=row.created_at.tzinfo or UTC) for row in left)
    await asyncio.sleep(max(0.0, (written + timedelta(seconds=1.2) - datetime.now(UTC)).total_seconds()))
    log_size = stack.data_dir.joinpath("worker.log").stat().st_size
    stack.worker = stack.worker_process().start()
    await wait_for_state(http, stack.api_url, transfer_id, {"COMPLETED"}, timeout_s=90)

    events = await _events(hooks, transfer_id)
    _assert_one_event_per_state(events, transfer_id, AUTO_PATH, [payer, account_id, "Test Payer", "Test Payee"])
    await _assert_delivered_once_each(http, hooks, transfer_id, events, [every], posts_may_repeat=True)
    with stack.data_dir.joinpath("worker.log").open("rb") as log:
        log.seek(log_size)
        assert b"webhook sweeper dispatched 2 deliveries left undispatched" in log.read()


async def test_a_temporal_outage_does_not_stall_the_transfer(hooks: Hooks, http: httpx.AsyncClient) -> None:
    """The worker's starts of deliveries cannot reach Temporal (a real cut connection, through a proxy): every save
    still commits at once and the transfer completes as fast as usual; its deliveries wait, undispatched, and
    the sweeper starts each once Temporal is back. The transfer's own worker keeps its direct connection."""
    stack = hooks.stack
    settings = settings_of(stack.env)
    client_key = _client_key()
    every = await _subscribe(http, hooks, client_key)
    payer, account_id = await new_payer(http, stack.cbs_url)
    stack.worker.stop()
    try:
        with TcpProxy(settings.temporal_address) as proxy:
            direct = await connect(settings)
            cut_off = await connect(settings.model_copy(update={"temporal_address": proxy.address}))
            proxy.cut()
            async with worker_resources(settings, cut_off) as objects, build_worker(direct, settings, objects):
                headers = money_movement_headers(client_key=client_key)
                began = time.monotonic()
                response = await http.post(
                    f"{stack.api_url}/transfers", json=transfer_body(payer=payer), headers=headers
                )
                took = time.monotonic() - began
                assert response.status_code == 201 and response.json()["currentState"] == "COMPLETED", response.text
                assert took < 8, f"the transfer took {took:.1f} s"
                transfer_id = response.json()["transferId"]
                events = await _events(hooks, transfer_id)
                assert [e.data["currentState"] for e in events] == AUTO_PATH
                waiting = [row for row in await _deliveries(hooks, transfer_id) if row.dispatched_at is None]
                assert len(waiting) == len(AUTO_PATH)  # RECEIVED's too: the rounds that claimed it could not start it

                proxy.restore()
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and waiting:
                    await asyncio.sleep(0.2)
                    waiting = [row for row in await _deliveries(hooks, transfer_id) if row.dispatched_at is None]
                assert not waiting, f"{len(waiting)} deliveries never started once Temporal was back"
    finally:
        stack.worker = stack.worker_process().start()
    _assert_one_event_per_state(events, transfer_id, AUTO_PATH, [payer, account_id, "Test Payer", "Test Payee"])
    await _assert_delivered_once_each(http, hooks, transfer_id, events, [every])
