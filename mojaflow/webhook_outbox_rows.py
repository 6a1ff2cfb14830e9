"""The rows of the webhooks' transactional outbox (DESIGN "Webhooks", emission): what a transfer's save writes for
its webhooks, in its own transaction (`Database.save_transfer_with_event`).

`EventWriter.write` inserts the state's event row (its id from (transferId, sequence), `ON CONFLICT DO NOTHING`: a
re-run writes nothing) and one delivery row per subscription of the transfer's owner that wants it. Without any
subscription of that owner this is one statement: the event insert's RETURNING tells whether the owner has one. A
writer that dispatches its deliveries itself (a worker's save) writes them claimed: they name the workflow of the
batch they would open (`webhook_dispatch.claim`). Dispatching them is `mojaflow.webhook_outbox`'s.

Event rows hold no personal data: `PaymentStatus` has ids, states, amount and the reason of a failure, no party.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists
from sqlalchemy.engine import Connection

from mojaflow import webhook_subscriptions as _subscriptions  # a module: database.py imports us while it loads
from mojaflow.models import FINAL_STATES, Direction, TransferRecord, TransferState
from mojaflow.settings import Settings
from mojaflow.webhook_dispatch import planned_workflow_id
from mojaflow.webhook_models import EVENT_TYPE, DeliveryItem, DeliveryStatus, PaymentStatus, delivery_id, event_id
from mojaflow.webhook_tables import webhook_deliveries, webhook_events, webhook_subscriptions

__all__ = ["EventDefaults", "EventWriter", "PendingDelivery", "delivery_item", "event_row"]


@dataclass(frozen=True)
class EventDefaults:
    """What an event gets when its record says nothing: the owner (inbound and header-less transfers belong to the
    bank itself) and an inbound transfer's Money Movement headers. The defaults here are the settings' defaults."""

    client_key: str = "bank"
    inbound_product: str = "retail_payments"
    inbound_payment_channel: str = "csm"

    @classmethod
    def of(cls, settings: Settings) -> EventDefaults:
        return cls(settings.default_client_key, settings.inbound_product, settings.inbound_payment_channel)


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery to hand to a workflow: to which subscriber, of which transfer, and what (`item`)."""

    transfer_id: str
    subscription_id: str
    item: DeliveryItem


def event_row(record: TransferRecord, defaults: EventDefaults, now: datetime) -> dict[str, Any]:
    """The outbox row of one saved state. `now` becomes `occurredAt`: the first write's, since a re-run's insert
    finds the row and changes nothing."""
    view = record.view
    inbound = view.direction is Direction.INBOUND
    status = PaymentStatus(
        transfer_id=view.transfer_id,
        home_transaction_id=view.home_transaction_id,
        direction=view.direction,
        previous_state=record.previous_state,
        current_state=view.current_state,
        sequence=record.sequence,
        amount=view.amount,
        currency=view.currency,
        last_error=view.last_error,
        occurred_at=now,
    )
    return {
        "event_id": event_id(view.transfer_id, record.sequence),
        "transfer_id": view.transfer_id,
        "sequence": record.sequence,
        "client_key": record.client_key or defaults.client_key,
        "event_type": EVENT_TYPE,
        "product": record.product or (defaults.inbound_product if inbound else None),
        "payment_channel": record.payment_channel or (defaults.inbound_payment_channel if inbound else None),
        "data": status.model_dump(mode="json", by_alias=True),
        "occurred_at": now,
    }


class EventWriter:
    """The outbox's statements, built once per database: the save is the transfers' hot path."""

    def __init__(self, insert: Any) -> None:
        subscribed = exists().where(
            (webhook_subscriptions.c.client_key == bindparam("owner"))
            & webhook_subscriptions.c.enabled.is_(True)
            & webhook_subscriptions.c.deleted_at.is_(None)
        )
        self._insert_event = (
            insert(webhook_events)
            .on_conflict_do_nothing(index_elements=[webhook_events.c.event_id])
            .returning(subscribed.label("subscribed"))
        )
        self._insert_deliveries = insert(webhook_deliveries).on_conflict_do_nothing(
            index_elements=[webhook_deliveries.c.delivery_id]
        )

    def write(
        self,
        connection: Connection,
        record: TransferRecord,
        defaults: EventDefaults,
        now: datetime,
        dispatching: bool = False,
    ) -> list[PendingDelivery] | None:
        """Insert the state's event and its deliveries: the deliveries written, or None if the event was there
        already (a re-run: its first run may have died before starting them, so they are to be looked up).
        `dispatching`: the writer's dispatcher takes them, so they are written claimed (`webhook_dispatch.claim`)."""
        row = event_row(record, defaults, now)
        written = connection.execute(self._insert_event, {**row, "owner": row["client_key"]}).first()
        if written is None:
            return None
        if not written.subscribed:
            return []
        state = record.view.current_state
        subscriptions = _subscriptions.matching_subscription_ids(connection, row["client_key"], EVENT_TYPE, state.value)
        pending = [
            PendingDelivery(row["transfer_id"], sub, delivery_item(delivery_id(row["event_id"], sub), row["event_id"],
                                                           row["transfer_id"], record.sequence, state))
            for sub in subscriptions
        ]  # fmt: skip
        if pending:
            common = {
                "event_id": row["event_id"], "transfer_id": row["transfer_id"], "client_key": row["client_key"],
                "created_at": now, "updated_at": now, "status": DeliveryStatus.PENDING.value, "attempts": 0,
                "cycle": 1,
            }  # fmt: skip
            rows = [{**common, "delivery_id": each.item.delivery_id, "subscription_id": each.subscription_id,
                     "workflow_id": planned_workflow_id(each.subscription_id, each.item) if dispatching else None}
                    for each in pending]  # fmt: skip
            connection.execute(self._insert_deliveries, rows)
        return pending


def delivery_item(
    delivery: str, event: str, transfer_id: str, sequence: int, state: TransferState, *, cycle: int = 1
) -> DeliveryItem:
    """A delivery as its workflow knows it: ids, its cycle and its event's place in the transfer."""
    return DeliveryItem(delivery_id=delivery, event_id=event, transfer_id=transfer_id, cycle=cycle, sequence=sequence,
                        final=state in FINAL_STATES)  # fmt: skip
