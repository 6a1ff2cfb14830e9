"""Requests that leave at most once, even when the local activity that sends them runs again.

The SDK's party lookup and party acceptance run on into the prepare at a misconfigured SDK (auto-accept flags), so
each is sent at most once. They run as local activities: no round trip through Temporal's server, two workflow
tasks fewer per transfer. But a local activity runs again whenever its result did not reach the history: a retry,
or a worker that died before the workflow task that ran it completed (which, since a transfer's first workflow
task runs everything up to the money step, includes a crash during the CBS hold). So the activity first claims
its request here, in our database, under the workflow run and the activity's id (the same on every replay:
Temporal numbers a run's local activities in the order the workflow schedules them), and only the run that made
the claim sends. It keeps the answer with the claim (sealed with the secrets ring: it names the payee), so a later
run answers what the first one got; a run that finds a claim without an answer (the first died mid-request)
reports that the request may have left, as a crashed normal activity would have been reported.

A claim matters only until the workflow task that ran it completes (seconds); `forget_sent_requests` deletes the
day-old ones, their answers with them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import JSON, Column, DateTime, Index, String, Table, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity

from mojaflow.database import Database, metadata

__all__ = ["SentRequests", "forget_sent_requests", "sent_requests"]

log = logging.getLogger(__name__)

KEPT_FOR = timedelta(days=1)

sent_requests = Table(
    "sent_requests",
    metadata,
    Column("request_key", String(300), primary_key=True),  # workflow id / run id / activity id
    Column("activity_type", String(64), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("answer", JSON),  # sealed; null until the answer came (or without a secrets ring)
    Index("ix_sent_requests_claimed_at", "claimed_at"),
)

Answer = TypeVar("Answer", bound=BaseModel)


class SentRequests:
    """The claims of one process's activities (one per worker, on its app database)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._claim = database.insert(sent_requests).on_conflict_do_nothing(
            index_elements=[sent_requests.c.request_key]
        )

    async def once(self, send: Callable[[], Awaitable[Answer]], unanswered: Answer) -> Answer:
        """`send()`'s answer, sent only by the first run of the running activity; a later run gets the answer the
        first one kept, or `unanswered` if it kept none (the request may have left)."""
        info = activity.info()
        key = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
        values = {"request_key": key, "activity_type": info.activity_type, "claimed_at": datetime.now(UTC)}
        claimed = await self._database.transaction(
            lambda connection: bool(connection.execute(self._claim, values).rowcount)
        )
        if not claimed:
            return await self._kept_answer(key, type(unanswered)) or unanswered
        answer = await send()
        try:
            await self._keep(key, answer)
        except SQLAlchemyError as error:  # a re-run would report "no answer": safe, only less helpful
            log.warning("%s: the answer is not kept with its claim (%s)", info.activity_type, type(error).__name__)
        return answer

    async def _keep(self, key: str, answer: BaseModel) -> None:
        sealer = self._database.sealer
        if sealer is None:  # no secrets ring: nothing personal is stored
            return
        sealed = sealer.seal(answer.model_dump(mode="json"), context=f"sent:{key}")
        keep = update(sent_requests).where(sent_requests.c.request_key == key).values(answer=sealed)
        await self._database.transaction(lambda connection: connection.execute(keep))

    async def _kept_answer(self, key: str, answer_type: type[Answer]) -> Answer | None:
        query = select(sent_requests.c.answer).where(sent_requests.c.request_key == key)
        async with self._database.engine.connect() as connection:
            sealed = (await connection.execute(query)).scalar()
        if sealed is None or self._database.sealer is None:
            log.warning("%s: an earlier run sent it and kept no answer; not sent again", activity.info().activity_type)
            return None
        return answer_type.model_validate(self._database.sealer.open(sealed, context=f"sent:{key}"))


async def forget_sent_requests(database: Database, *, now: datetime) -> int:
    """Delete the claims older than `KEPT_FOR`, with their answers: their workflow tasks completed long ago, or
    failed and were run again with the claim still there. Idempotent."""
    async with database.engine.begin() as connection:
        result = await connection.execute(delete(sent_requests).where(sent_requests.c.claimed_at < now - KEPT_FOR))
    return result.rowcount
