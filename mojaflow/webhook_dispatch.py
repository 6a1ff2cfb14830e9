"""Handing deliveries to their workflow and marking their rows dispatched: one way for every dispatcher (the
outbox's saves and sweeper, the client API's manual retries and recoveries), so that they all agree on the
workflow's id and policies.

A dispatcher's deliveries to one subscriber, of any transfers, travel as one batch (at most `BATCH_SIZE`): one
workflow delivers them all, so a delivery costs a share of one workflow rather than a workflow (DESIGN "Webhooks",
the delivery's cost). The workflow, named after the batch's first delivery, is signalled with start: a running one
gets the deliveries as a signal (a sweeper's dispatch of the same deliveries), otherwise a new run starts with them
(a closed one's id is reused). A delivery it knows already, in that cycle, is ignored, and one already DELIVERED is
not posted again, so dispatching twice is harmless. The mark is per (delivery, cycle), never overwriting a status
the delivery activity already wrote (a manual retry may have moved the row to its next cycle meanwhile), and keeps
the workflow's id for the API's retries and cancellations.

An undispatched delivery whose row names a workflow is in some dispatcher's hands: the writer's, if it dispatches
what it writes (a worker's save), or a dispatcher's that claimed it (`claim`). One with none was written by a process
that does not dispatch (the client API's RECEIVED save); each worker's dispatcher claims such rows for its next
round, and the claim, one conditional update, lets only one of them have a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, case, update
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from mojaflow.temporal import WEBHOOK_EVENT_IDS, WEBHOOK_STATUS, WEBHOOK_SUBSCRIPTION_ID, WEBHOOK_TRANSFER_IDS
from mojaflow.webhook_models import DeliveryBatch, DeliveryItem, DeliveryStatus, batch_workflow_id, indexed_ids
from mojaflow.webhook_tables import webhook_deliveries

if TYPE_CHECKING:
    from mojaflow.database import Database

__all__ = [
    "BATCH_SIZE",
    "DELIVERY_SIGNAL",
    "DELIVERY_WORKFLOW",
    "batches",
    "claim",
    "dispatch_batch",
    "mark_dispatched",
    "planned_workflow_id",
]

DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"  # started by name: workflows/webhook_delivery.py
DELIVERY_SIGNAL = "deliver"
# Deliveries per workflow. Its search attributes list their event and transfer ids, and a value may not exceed 2 KB
# (Temporal's `limit.searchAttributesSizeOfValue`): 40 transfer ids of 36 characters take 1.6 KB.
BATCH_SIZE = 40


def batches(deliveries: Iterable[tuple[str, DeliveryItem]]) -> list[DeliveryBatch]:
    """(subscription id, item) pairs grouped into batches of one subscriber's deliveries, at most `BATCH_SIZE`
    each, in the order given (the oldest first); within a batch each transfer's deliveries in event order."""
    grouped: dict[str, list[DeliveryItem]] = {}
    for subscription_id, item in deliveries:
        grouped.setdefault(subscription_id, []).append(item)
    return [
        DeliveryBatch(subscription_id=subscription, deliveries=sorted(items[start : start + BATCH_SIZE], key=_order))
        for subscription, items in grouped.items()
        for start in range(0, len(items), BATCH_SIZE)
    ]


async def dispatch_batch(client: Client, batch: DeliveryBatch, *, task_queue: str, timeout_s: float) -> None:
    """Signal the batch to its workflow, starting it if it does not run. Raises what Temporal raises."""
    await client.start_workflow(
        DELIVERY_WORKFLOW,
        batch,
        id=batch.workflow_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal=DELIVERY_SIGNAL,
        start_signal_args=[batch],
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(WEBHOOK_TRANSFER_IDS, indexed_ids(batch.transfer_ids())),
                SearchAttributePair(WEBHOOK_SUBSCRIPTION_ID, batch.subscription_id),
                SearchAttributePair(WEBHOOK_EVENT_IDS, indexed_ids(item.event_id for item in batch.deliveries)),
                SearchAttributePair(WEBHOOK_STATUS, DeliveryStatus.DELIVERING.value),
            ]
        ),
        rpc_timeout=timedelta(seconds=timeout_s),
    )


def planned_workflow_id(subscription_id: str, item: DeliveryItem) -> str:
    """What an undispatched row names while a dispatcher has it: the workflow of a batch it would open. The mark
    sets the batch it went to."""
    return batch_workflow_id(item.event_id, subscription_id, item.cycle)


async def claim(database: Database, deliveries: Sequence[tuple[str, DeliveryItem]]) -> set[str]:
    """Claim these (subscription id, item) deliveries, found undispatched and claimed by none, for this process's
    dispatcher: the ids it got. Another dispatcher that claimed one first keeps it."""
    if not deliveries:
        return set()
    planned = {item.delivery_id: planned_workflow_id(subscription, item) for subscription, item in deliveries}
    statement = (
        update(webhook_deliveries)
        .where(
            _deliveries.delivery_id.in_(list(planned))
            & (_deliveries.cycle == 1)
            & _deliveries.workflow_id.is_(None)
            & _deliveries.dispatched_at.is_(None)
        )
        .values(workflow_id=case(planned, value=_deliveries.delivery_id))
        .returning(_deliveries.delivery_id)
    )
    return set(await database.transaction(lambda connection: connection.execute(statement).scalars().all()))


def _order(item: DeliveryItem) -> tuple[str, int, int]:
    return item.transfer_id or "", item.sequence, item.cycle


async def mark_dispatched(database: Database, started: Sequence[DeliveryBatch]) -> None:
    """Their workflows have them: `dispatched_at` and the workflow's id set, and `DELIVERING` unless the activity
    already wrote a status; per (delivery, cycle), one transaction."""
    if not started:
        return
    now = datetime.now(UTC)
    params = [
        {"started_id": each.delivery_id, "started_cycle": each.cycle, "now": now, "workflow": batch.workflow_id}
        for batch in started
        for each in batch.deliveries
    ]
    await database.transaction(lambda connection: connection.execute(_MARK_DISPATCHED, params))


_deliveries = webhook_deliveries.c
_MARK_DISPATCHED = (
    update(webhook_deliveries)
    .where(
        (_deliveries.delivery_id == bindparam("started_id"))
        & (_deliveries.cycle == bindparam("started_cycle"))
        & _deliveries.dispatched_at.is_(None)
    )
    .values(
        dispatched_at=bindparam("now"),
        updated_at=bindparam("now"),
        workflow_id=bindparam("workflow"),
        status=case(
            (_deliveries.status == DeliveryStatus.PENDING.value, DeliveryStatus.DELIVERING.value),
            else_=_deliveries.status,
        ),
    )
)
