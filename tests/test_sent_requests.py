"""The claims that keep the SDK's party lookup and acceptance to one send each (mojaflow/sent_requests.py), on both
database engines: a re-run of the same local activity never sends again; it answers what the first run kept,
sealed at rest, or "no answer" when the first run kept none."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.payment_manager import PartyLookupResult
from mojaflow.database import Database
from mojaflow.models import PartyView
from mojaflow.sent_requests import SentRequests, forget_sent_requests, sent_requests

PAYEE_NAME = "Zuri Sent-Request-Test"
NO_ANSWER = PartyLookupResult(answered=False)


def _environment(run: str, activity_id: str = "3") -> ActivityEnvironment:
    """The activity `activity_id` of the workflow run `run` (each test has a database of its own)."""
    environment = ActivityEnvironment()
    environment.info = replace(environment.info, workflow_run_id=run, activity_id=activity_id, is_local=True)
    return environment


class Sender:
    """Counts the sends, as the SDK would see them."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self) -> PartyLookupResult:
        self.sent += 1
        return PartyLookupResult(sdk_transfer_id="sdk-1", payee=PartyView(name=PAYEE_NAME, fsp_id="payeefsp"))


async def test_a_rerun_answers_what_the_first_run_got_without_sending_again(database: Database) -> None:
    sent = SentRequests(database)
    send = Sender()

    first = await _environment("run-1").run(sent.once, send, NO_ANSWER)
    again = await _environment("run-1").run(sent.once, send, NO_ANSWER)

    assert send.sent == 1
    assert again == first
    assert again.payee is not None and again.payee.name == PAYEE_NAME


async def test_the_kept_answer_is_sealed_at_rest(database: Database) -> None:
    await _environment("run-1").run(SentRequests(database).once, Sender(), NO_ANSWER)

    mine = sent_requests.c.request_key.endswith("run-1/3")
    async with database.engine.connect() as connection:
        stored = (await connection.execute(select(sent_requests.c.answer).where(mine))).scalar_one()
    assert set(stored) == {"keyId", "data"}
    assert PAYEE_NAME not in str(stored)


async def test_a_claim_without_an_answer_is_reported_unanswered_and_not_sent(database: Database) -> None:
    """The first run died mid-request (its claim made, no answer kept): the request may have left."""
    sent = SentRequests(database)

    async def dies_mid_request() -> PartyLookupResult:
        raise ConnectionResetError("the worker died here")

    with pytest.raises(ConnectionResetError):
        await _environment("run-1").run(sent.once, dies_mid_request, NO_ANSWER)
    send = Sender()
    answer = await _environment("run-1").run(sent.once, send, NO_ANSWER)

    assert (send.sent, answer) == (0, NO_ANSWER)


async def test_other_activities_and_other_runs_send_their_own(database: Database) -> None:
    sent = SentRequests(database)
    send = Sender()

    await _environment("run-1", activity_id="3").run(sent.once, send, NO_ANSWER)
    await _environment("run-1", activity_id="5").run(sent.once, send, NO_ANSWER)
    await _environment("run-2", activity_id="3").run(sent.once, send, NO_ANSWER)

    assert send.sent == 3


async def test_claims_are_forgotten_after_a_day(database: Database) -> None:
    sent = SentRequests(database)
    await _environment("run-1").run(sent.once, Sender(), NO_ANSWER)

    assert await forget_sent_requests(database, now=datetime.now(UTC) + timedelta(hours=23)) == 0
    assert await forget_sent_requests(database, now=datetime.now(UTC) + timedelta(hours=25)) >= 1
    send = Sender()
    await _environment("run-1").run(sent.once, send, NO_ANSWER)
    assert send.sent == 1  # forgotten: only a run long finished could come back to it, and none does
