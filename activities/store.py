"""Saving each state of a transfer to the app database (run as a local activity: cheap, retried, idempotent),
with its webhook event in the same transaction; its deliveries are started right after the commit
(mojaflow/webhook_outbox.py). And reading a saved transfer back, for an operator's resolution."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select
from temporalio import activity

from mojaflow.models import TransferRecord
from mojaflow.webhook_outbox import Outbox
from mojaflow.webhook_tables import webhook_events

__all__ = ["StoreActivities", "TransferLookup"]


class TransferLookup(BaseModel):
    transfer_id: str


class StoreActivities:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    @activity.defn
    async def save_transfer(self, record: TransferRecord) -> None:
        """Upsert unless a newer revision is saved (a retried or late save never goes back in time), write the
        state's event once, start its deliveries. A re-run writes nothing and starts what is still unstarted; a
        delivery that cannot be started now is the sweeper's, never a reason to fail the save."""
        await self._outbox.save(record)

    @activity.defn
    async def load_saved_transfer(self, lookup: TransferLookup) -> TransferRecord | None:
        """The transfer's last saved state as a record (its personal data unsealed: it goes back sealed with the
        next save), with the Money Movement headers its events were written with; None if unknown. Reads only."""
        database = self._outbox.database
        stored = await database.find_transfer(lookup.transfer_id)
        if stored is None:
            return None
        events = webhook_events.c
        query = (
            select(events.product, events.payment_channel, events.data)
            .where(events.transfer_id == stored.view.transfer_id)
            .order_by(events.sequence.desc())
            .limit(1)
        )
        async with database.engine.connect() as connection:
            last = (await connection.execute(query)).first()
        return TransferRecord(
            view=stored.view,
            revision=stored.revision,
            workflow_id=stored.workflow_id,
            client_key=stored.client_key,
            previous_state=last.data.get("previousState") if last else None,
            product=last.product if last else None,
            payment_channel=last.payment_channel if last else None,
        )
