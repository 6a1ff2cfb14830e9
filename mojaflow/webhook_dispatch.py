"""Handing deliveries to their workflow and marking their rows dispatched: one way for every dispatcher (the
outbox's saves and sweeper, the client API's manual retries and recoveries), so that they all agree on the
workflow's id and policies.

The workflow of a (transfer, subscription) is signalled with start: a running one gets the deliveries as a signal,
otherwise a new run starts with them (a closed one's id is reused). A delivery it knows already, in that cycle, is
ignored, so dispatching twice is harmless. The mark is per (delivery, cycle), never overwriting a status the
delivery activity already wrote: a manual retry may have moved the row to its next cycle meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, case, update
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from mojaflow.temporal import TRANSFER_ID, WEBHOOK_EVENT_IDS, WEBHOOK_STATUS, WEBHOOK_SUBSCRIPTION_ID
from mojaflow.webhook_models import DeliveryBatch, DeliveryItem, DeliveryStatus, delivery_workflow_id
from mojaflow.webhook_tables import webhook_deliveries

if TYPE_CHECKING:
    from mojaflow.database import Database

__all__ = ["DELIVERY_SIGNAL", "DELIVERY_WORKFLOW", "batches", "dispatch_batch", "mark_dispatched"]

DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"  # started by name: workflows/webhook_delivery.py
DELIVERY_SIGNAL = "deliver"


def batches(deliveries: Iterable[tuple[str, str, DeliveryItem]]) -> list[DeliveryBatch]:
    """(transfer id, subscription id, item) triples grouped into one batch per workflow, items in event order."""
    grouped: dict[tuple[str, str], list[DeliveryItem]] = {}
    for transfer_id, subscription_id, item in deliveries:
        grouped.setdefault((transfer_id, subscription_id), []).append(item)
    return [
        DeliveryBatch(transfer_id=transfer, subscription_id=subscription, deliveries=sorted(items, key=_order))
        for (transfer, subscription), items in grouped.items()
    ]


async def dispatch_batch(client: Client, batch: DeliveryBatch, *, task_queue: str, timeout_s: float) -> None:
    """Signal the batch to its workflow, starting it if it does not run. Raises what Temporal raises."""
    await client.start_workflow(
        DELIVERY_WORKFLOW,
        batch,
        id=delivery_workflow_id(batch.transfer_id, batch.subscription_id),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal=DELIVERY_SIGNAL,
        start_signal_args=[batch],
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(TRANSFER_ID, batch.transfer_id),
                SearchAttributePair(WEBHOOK_SUBSCRIPTION_ID, batch.subscription_id),
                SearchAttributePair(WEBHOOK_EVENT_IDS, [item.event_id for item in batch.deliveries]),
                SearchAttributePair(WEBHOOK_STATUS, DeliveryStatus.DELIVERING.value),
            ]
        ),
        rpc_timeout=timedelta(seconds=timeout_s),
    )


def _order(item: DeliveryItem) -> tuple[int, int]:
    return item.sequence, item.cycle


async def mark_dispatched(database: Database, started: Sequence[DeliveryItem]) -> None:
    """Their workflows have them: `dispatched_at` set, and `DELIVERING` unless the activity already wrote a
    status; per (delivery, cycle), one transaction."""
    if not started:
        return
    now = datetime.now(UTC)
    params = [{"started_id": each.delivery_id, "started_cycle": each.cycle, "now": now} for each in started]
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
        status=case(
            (_deliveries.status == DeliveryStatus.PENDING.value, DeliveryStatus.DELIVERING.value),
            else_=_deliveries.status,
        ),
    )
)
