"""Starting a delivery's workflow and marking its row dispatched: one way for every starter (the outbox's saves and
sweeper, the client API's manual retries and recoveries), so that they all agree on the workflow's id and policies.

A start that finds the workflow of that (delivery, cycle) there, running or closed, is success: whoever started it
first, the delivery is under way. The mark is per (delivery, cycle), never overwriting a status the delivery
activity already wrote: a manual retry may have moved the row to its next cycle meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import bindparam, case, update
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from mojaflow.webhook_models import DeliveryInput, DeliveryStatus, delivery_workflow_id
from mojaflow.webhook_tables import webhook_deliveries

if TYPE_CHECKING:
    from mojaflow.database import Database

__all__ = ["DELIVERY_WORKFLOW", "DeliveryCycle", "mark_dispatched", "start_delivery"]

DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"  # started by name: workflows/webhook_delivery.py


class DeliveryCycle(Protocol):
    """A delivery in one of its cycles, as a row of `webhook_deliveries` or a `DeliveryView` names it."""

    @property
    def delivery_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def subscription_id(self) -> str: ...
    @property
    def transfer_id(self) -> str: ...
    @property
    def cycle(self) -> int: ...


async def start_delivery(client: Client, delivery: DeliveryCycle, *, task_queue: str, timeout_s: float) -> None:
    """Start the workflow of the delivery's cycle. Raises what Temporal raises, except that it is there already."""
    workflow_input = DeliveryInput(
        delivery_id=delivery.delivery_id,
        event_id=delivery.event_id,
        subscription_id=delivery.subscription_id,
        transfer_id=delivery.transfer_id,
        cycle=delivery.cycle,
    )
    try:
        await client.start_workflow(
            DELIVERY_WORKFLOW,
            workflow_input,
            id=delivery_workflow_id(delivery.delivery_id, delivery.cycle),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            rpc_timeout=timedelta(seconds=timeout_s),
        )
    except WorkflowAlreadyStartedError:  # this cycle ran and closed already: started, as wanted
        pass


async def mark_dispatched(database: Database, started: Sequence[DeliveryCycle]) -> None:
    """Their workflows are started: `dispatched_at` set, and `DELIVERING` unless the activity already wrote a
    status; per (delivery, cycle), one transaction."""
    if not started:
        return
    now = datetime.now(UTC)
    params = [{"started_id": each.delivery_id, "started_cycle": each.cycle, "now": now} for each in started]
    async with database.engine.begin() as connection:
        await connection.execute(_MARK_DISPATCHED, params)


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
