"""Retention of personal data: `MOJAFLOW_PERSONAL_DATA_RETENTION_DAYS` after a transfer ended, its personal fields
(the sealed names and party ids) are purged from our database; amounts, states, ids and FSP ids stay for
reconciliation. Inbound quotes (payee name and account) go once both that age and their expiry have passed.

The job is a loop in every worker process (`purge_in_background`), not a Temporal Schedule: the purge is defined by
the database's state (every final transfer older than the cutoff), not by events, so a run missed while workers were
down is caught up by the next one; it is idempotent (a row is rewritten only if its revision did not move), so N
workers running it at once do no harm; and it needs no workflow, schedule to register on every server, nor history
per run. Personal data in Temporal's histories is encrypted and leaves with the namespace's retention period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from mojaflow.database import Database, inbound_quotes, transfers
from mojaflow.models import FINAL_STATES
from mojaflow.personal_data import SEALED
from mojaflow.sent_requests import forget_sent_requests
from mojaflow.settings import Settings

__all__ = ["PurgeReport", "purge_in_background", "purge_personal_data"]

log = logging.getLogger("mojaflow.retention")

_BATCH = 500


@dataclass(frozen=True)
class PurgeReport:
    transfers: int
    quotes: int


async def purge_personal_data(
    database: Database, *, now: datetime, retention: timedelta, quote_lifetime: timedelta = timedelta(0)
) -> PurgeReport:
    """Drop the sealed personal fields of every final transfer last changed before `now - retention`, and delete
    the inbound quotes made before that cutoff and before `now - quote_lifetime` (no transfer can still use them).
    Idempotent; safe to run from several processes at once."""
    cutoff = now - retention
    purged = 0
    has_sealed = transfers.c.resource[(SEALED, "keyId")].as_string().is_not(None)
    due = (
        select(transfers.c.transfer_id, transfers.c.resource, transfers.c.revision)
        .where(transfers.c.current_state.in_([state.value for state in FINAL_STATES]))
        .where(transfers.c.updated_at < cutoff)
        .where(has_sealed)
        .order_by(transfers.c.transfer_id)
        .limit(_BATCH)
    )
    after = ""
    while True:
        async with database.engine.begin() as connection:
            rows = (await connection.execute(due.where(transfers.c.transfer_id > after))).all()
            for row in rows:
                resource = {name: value for name, value in row.resource.items() if name != SEALED}
                result = await connection.execute(
                    update(transfers)
                    .where((transfers.c.transfer_id == row.transfer_id) & (transfers.c.revision == row.revision))
                    .values(resource=resource)
                )
                purged += result.rowcount
        if len(rows) < _BATCH:
            break
        after = rows[-1].transfer_id
    quote_cutoff = min(cutoff, now - quote_lifetime)
    async with database.engine.begin() as connection:
        quotes = await connection.execute(delete(inbound_quotes).where(inbound_quotes.c.created_at < quote_cutoff))
    return PurgeReport(transfers=purged, quotes=quotes.rowcount)


@asynccontextmanager
async def purge_in_background(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """Run the purge at once and then every `MOJAFLOW_PERSONAL_DATA_PURGE_INTERVAL_S`, until the block exits."""
    database = Database(settings.resolved_database_url)
    task = asyncio.create_task(_purge_forever(database, settings), name="personal-data-purge")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await database.close()


async def _purge_forever(database: Database, settings: Settings) -> None:
    retention = timedelta(days=settings.personal_data_retention_days)
    # a quote is good until its expiry (at most quote_expiry_s); its transfer's prepare then lives transfer_expiry_s
    quote_lifetime = timedelta(seconds=settings.quote_expiry_s + settings.transfer_expiry_s)
    while True:
        try:
            report = await purge_personal_data(
                database, now=datetime.now(UTC), retention=retention, quote_lifetime=quote_lifetime
            )
        except Exception as error:  # a database hiccup: the next run catches up
            log.warning("personal data purge failed (%s); next attempt in %.0f s", type(error).__name__,
                        settings.personal_data_purge_interval_s)  # fmt: skip
        else:
            if report.transfers or report.quotes:
                log.info("personal data purged: %d transfers, %d quotes", report.transfers, report.quotes)
        try:  # housekeeping on the same beat: the SDK requests' day-old claims (mojaflow/sent_requests.py)
            await forget_sent_requests(database, now=datetime.now(UTC))
        except Exception as error:
            log.warning("sent-request claims not cleaned up (%s); next attempt later", type(error).__name__)
        await asyncio.sleep(settings.personal_data_purge_interval_s)
