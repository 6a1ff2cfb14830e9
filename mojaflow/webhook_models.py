"""Webhooks' data contracts: the event (Money Movement Services Webhooks 1.0 envelope), a delivery's identity and
states, and the delivery workflow's input. Shared by the API, the outbox, the delivery workflow and its activities.

An event is one state change of one transfer. Its id is derived from (transferId, sequence), so every re-post, every
re-run of the save that wrote it and every manual retry carries the same id; a receiver dedupes on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mojaflow.models import CamelModel, Direction, TransferError, TransferState

__all__ = [
    "ATTEMPTS_PER_CYCLE",
    "EVENT_TYPE",
    "NOT_IN_THIS_RUN",
    "DeliveryBatch",
    "DeliveryItem",
    "DeliveryStatus",
    "PaymentStatus",
    "WebhookEvent",
    "batch_workflow_id",
    "delivery_id",
    "delivery_workflow_id",
    "event_id",
    "indexed_ids",
    "workflow_of",
]

EVENT_TYPE: Literal["moneymovementservices.payment.status_updated"] = "moneymovementservices.payment.status_updated"
ATTEMPTS_PER_CYCLE = 73  # 0 h, 1 h, ... 72 h: re-posted every hour for at most 3 days
NOT_IN_THIS_RUN = "DeliveryNotInThisRun"  # the delivery workflow's refusal of a `retry_now` for one it does not hold
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
EVENT_ID_LENGTH = 20  # the contract's maximum; 20 base62 digits hold 119 bits of the hash
INDEXED_BYTES = 1800  # of a list search attribute's value (Temporal refuses one over 2 KB)


def event_id(transfer_id: str, sequence: int) -> str:
    """The event's id: 20 characters of [a-zA-Z0-9], the same for (transfer_id, sequence) wherever it is made."""
    number = int.from_bytes(hashlib.sha256(f"{transfer_id}\x1f{sequence}".encode()).digest(), "big")
    digits = []
    for _ in range(EVENT_ID_LENGTH):
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(digits)


def workflow_of(row: Any) -> str | None:
    """The workflow that holds the delivery's cycle: none before it is dispatched (a claimed row names the batch it
    would open, which may not run yet, nor ever be the one it goes to). A row dispatched before batches has none
    stored: its transfer's workflow to that subscriber held it."""
    if row.dispatched_at is None:
        return None
    return row.workflow_id or delivery_workflow_id(row.transfer_id, row.subscription_id)


def indexed_ids(values: Iterable[str]) -> list[str]:
    """As many of these ids, once each and in order, as a list search attribute holds: ids beyond are left out of
    a delivery workflow's index, never out of its batch."""
    kept: list[str] = []
    size = 2  # the JSON list's brackets
    for value in dict.fromkeys(values):
        size += len(value) + 3  # quotes and comma
        if size > INDEXED_BYTES:
            break
        kept.append(value)
    return kept


def delivery_id(event: str, subscription_id: str) -> str:
    """One delivery per (event, subscription): its id in our API and database."""
    return f"{event}-{subscription_id}"


def batch_workflow_id(event: str, subscription_id: str, cycle: int) -> str:
    """`webhook-{eventId}-{subscriptionId}-{cycle}`: the delivery workflow of a batch, named after its first
    delivery (DESIGN "Webhooks"). A batch of one, a manual retry's new cycle, is named after that delivery."""
    return f"webhook-{event}-{subscription_id}-{cycle}"


def delivery_workflow_id(transfer_id: str, subscription_id: str) -> str:
    """`webhook-{transferId}-{subscriptionId}`: the id of runs started by versions before batches, which delivered
    one transfer's events to one subscriber. Only for finding such a run while it still delivers."""
    return f"webhook-{transfer_id}-{subscription_id}"


class PaymentStatus(CamelModel):
    """The event's `data`: the payment's status in the SDK's vocabulary. No party id or name, ever."""

    transfer_id: str
    home_transaction_id: str | None = None
    direction: Direction
    previous_state: TransferState | None = None
    current_state: TransferState
    sequence: int = Field(ge=1, description="the transfer's revision: receivers order a transfer's events by it")
    amount: str
    currency: str
    last_error: TransferError | None = None
    occurred_at: datetime


class WebhookEvent(BaseModel):
    """The envelope, to the letter of the contract: `id`, `event_type`, `data` (snake_case `event_type`)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=EVENT_ID_LENGTH, pattern=r"^[a-zA-Z0-9]+$")
    event_type: Literal["moneymovementservices.payment.status_updated"] = EVENT_TYPE
    data: PaymentStatus


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # written by the outbox; its workflow not yet started (the sweeper starts it)
    DELIVERING = "DELIVERING"  # its workflow runs: attempting, or waiting for the next hourly attempt
    DELIVERED = "DELIVERED"  # a receiver answered exactly 200
    FAILED = "FAILED"  # 73 attempts over 72 h without a 200; a manual retry starts a new cycle
    CANCELLED = "CANCELLED"  # its subscription was deleted or disabled


class DeliveryItem(BaseModel):
    """One delivery (event x subscription) in one of its cycles, as the delivery workflow knows it: ids only. The
    event is read from our database and the subscription's credentials by the activity, by id: no secret or
    personal data ever enters a history."""

    delivery_id: str
    event_id: str
    cycle: int = Field(default=1, ge=1)
    sequence: int = Field(default=0, ge=0)  # the event's: a transfer's deliveries are attempted in this order
    final: bool = False  # of a final state (a run of one transfer's deliveries closes once it is settled)
    transfer_id: str | None = None  # None only in the runs of one transfer's deliveries (the batch's transfer_id)


class DeliveryBatch(BaseModel):
    """Deliveries to one subscriber, of any transfers' events: the delivery workflow's input and its `deliver`
    signal's (signal-with-start: whoever dispatches does not know, nor need to, whether the workflow runs).

    Versions before batches sent one transfer's deliveries (`transfer_id` set), to a workflow that then waited for
    that transfer's later events; their runs still replay, so the field stays."""

    transfer_id: str | None = None
    subscription_id: str
    deliveries: list[DeliveryItem] = Field(min_length=1)

    @property
    def workflow_id(self) -> str:
        if self.transfer_id is not None:
            return delivery_workflow_id(self.transfer_id, self.subscription_id)
        first = self.deliveries[0]
        return batch_workflow_id(first.event_id, self.subscription_id, first.cycle)

    def transfer_ids(self) -> list[str]:
        """The transfers whose events the batch holds, in order, once each."""
        if self.transfer_id is not None:
            return [self.transfer_id]
        return list(dict.fromkeys(item.transfer_id for item in self.deliveries if item.transfer_id is not None))
