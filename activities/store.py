"""Saving each state of a transfer to the app database (run as a local activity: cheap, retried, idempotent),
with its webhook event in the same transaction; its deliveries are started right after the commit
(mojaflow/webhook_outbox.py)."""

from __future__ import annotations

from temporalio import activity

from mojaflow.models import TransferRecord
from mojaflow.webhook_outbox import Outbox

__all__ = ["StoreActivities"]


class StoreActivities:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    @activity.defn
    async def save_transfer(self, record: TransferRecord) -> None:
        """Upsert unless a newer revision is saved (a retried or late save never goes back in time), write the
        state's event once, start its deliveries. A re-run writes nothing and starts what is still unstarted; a
        delivery that cannot be started now is the sweeper's, never a reason to fail the save."""
        await self._outbox.save(record)
