"""How a dispatcher's deliveries become batches (one workflow each), what a batch's search attributes hold, and
which workflow a delivery's row names."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from mojaflow.webhook_dispatch import BATCH_SIZE, batches
from mojaflow.webhook_models import DeliveryItem, delivery_workflow_id, indexed_ids, workflow_of


def _item(transfer: str, sequence: int) -> DeliveryItem:
    event = f"e{uuid.uuid4().hex[:19]}"
    return DeliveryItem(delivery_id=f"{event}-s", event_id=event, transfer_id=transfer, sequence=sequence)


def test_each_subscribers_deliveries_are_batches_of_at_most_forty_each_transfer_in_its_order() -> None:
    transfers = [str(uuid.uuid4()) for _ in range(15)]
    handed = [(sub, _item(transfer, sequence)) for sequence in (3, 1, 2) for transfer in transfers for sub in "ab"]

    made = batches(handed)

    assert sorted(batch.subscription_id for batch in made) == ["a", "a", "b", "b"]
    for subscription in "ab":
        mine = [batch for batch in made if batch.subscription_id == subscription]
        assert [len(batch.deliveries) for batch in mine] == [BATCH_SIZE, 45 - BATCH_SIZE]
        items = [item for batch in mine for item in batch.deliveries]
        assert sorted(item.event_id for item in items) == sorted(i.event_id for s, i in handed if s == subscription)
        for batch in mine:
            for transfer in batch.transfer_ids():
                sequences = [item.sequence for item in batch.deliveries if item.transfer_id == transfer]
                assert sequences == sorted(sequences)
            first = batch.deliveries[0]
            assert batch.workflow_id == f"webhook-{first.event_id}-{subscription}-1"


def test_a_batchs_index_holds_what_a_search_attribute_may_and_each_id_once() -> None:
    transfers = [str(uuid.uuid4()) for _ in range(BATCH_SIZE)]
    assert indexed_ids([*transfers, transfers[0]]) == transfers  # forty transfers fit, once each
    many = [str(uuid.uuid4()) for _ in range(200)]
    kept = indexed_ids(many)
    assert kept == many[: len(kept)] and len(kept) < len(many)
    assert len(json.dumps(kept).encode()) <= 2048  # Temporal's limit on a search attribute's value


def test_a_delivery_names_its_workflow_only_once_dispatched() -> None:
    """The API answers a delivery's `workflowId` from its row: none while a dispatcher has only claimed it (the batch
    it names may not run yet), the batch once dispatched, and for a row dispatched before batches, which stored
    none, its transfer's workflow to that subscriber."""
    claimed = SimpleNamespace(
        workflow_id="webhook-e1-sub_1-1", dispatched_at=None, transfer_id="t1", subscription_id="sub_1"
    )
    dispatched = SimpleNamespace(**{**vars(claimed), "dispatched_at": datetime.now(UTC)})
    before_batches = SimpleNamespace(**{**vars(dispatched), "workflow_id": None})

    assert workflow_of(claimed) is None
    assert workflow_of(dispatched) == "webhook-e1-sub_1-1"
    assert workflow_of(before_batches) == delivery_workflow_id("t1", "sub_1") == "webhook-t1-sub_1"
