"""Saving each state of a transfer to the app database (run as a local activity: cheap, retried, idempotent)."""

from __future__ import annotations

from temporalio import activity

from mojaflow.database import Database
from mojaflow.models import TransferRecord

__all__ = ["StoreActivities"]


class StoreActivities:
    def __init__(self, database: Database) -> None:
        self._db = database

    @activity.defn
    async def save_transfer(self, record: TransferRecord) -> None:
        """Upsert unless a newer revision is saved: a retried or late save never goes back in time."""
        await self._db.save_transfer(record)
