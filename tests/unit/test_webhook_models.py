"""The event envelope and ids: the contract's shapes, and ids that are the same wherever they are derived."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mojaflow.models import Direction, TransferState
from mojaflow.webhook_models import PaymentStatus, WebhookEvent, batch_workflow_id, delivery_workflow_id, event_id


def test_event_ids_fit_the_contract_and_depend_only_on_transfer_and_sequence() -> None:
    transfer = str(uuid.uuid4())
    ids = {event_id(transfer, sequence) for sequence in range(1, 2001)}

    assert len(ids) == 2000
    assert all(re.fullmatch(r"[a-zA-Z0-9]{20}", value) for value in ids)
    assert event_id(transfer, 7) == event_id(transfer, 7)
    assert event_id(transfer, 7) != event_id(str(uuid.uuid4()), 7)


def test_the_envelope_is_the_contracts_to_the_letter() -> None:
    status = PaymentStatus(
        transfer_id="t-1",
        direction=Direction.OUTBOUND,
        previous_state=TransferState.TRANSFERRING,
        current_state=TransferState.COMPLETED,
        sequence=6,
        amount="10",
        currency="USD",
        occurred_at=datetime(2026, 12, 3, tzinfo=UTC),
    )
    event = WebhookEvent(id=event_id("t-1", 6), data=status)

    body = event.model_dump(mode="json", by_alias=True, exclude_none=True)

    assert set(body) == {"id", "event_type", "data"}
    assert body["event_type"] == "moneymovementservices.payment.status_updated"
    assert body["data"]["previousState"] == "TRANSFERRING" and body["data"]["sequence"] == 6
    assert delivery_workflow_id("t-1", "sub1") == "webhook-t-1-sub1"  # runs from before batches
    assert batch_workflow_id("ev1", "sub1", 2) == "webhook-ev1-sub1-2"  # a batch, after its first delivery
    with pytest.raises(ValidationError):
        WebhookEvent(id="not-alphanumeric", data=status)
