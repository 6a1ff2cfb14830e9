"""`mojaflow transfers list|show|export`, run as an operator runs them, against real databases (SQLite and
PostgreSQL) holding rows written by the real save path (`Database.save_transfer_with_event`: the transfer, its
events and deliveries), and against a real transfer of the test stack (its hold is the CBS simulator's).
Only the times are moved, by SQL, to make a transfer old or place it in a day."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from mojaflow.audit import record_action
from mojaflow.database import Database, transfers
from mojaflow.models import (
    DecisionRecord,
    Direction,
    PartyView,
    QuoteView,
    TransferError,
    TransferRecord,
    TransferState,
    TransferView,
)
from mojaflow.transfer_reports import EXPORT_COLUMNS
from mojaflow.webhook_models import EVENT_TYPE
from mojaflow.webhook_subscription_models import SubscriptionCreate
from mojaflow.webhook_subscriptions import create_subscription
from tests.conftest import ROOT, Stack
from tests.support.transfers import PAYER, money_movement_headers, transfer_body, wait_for_state

S = TransferState
PAYER_NAME = "Ada Lovelace-Byron"  # sealed at rest: the commands read without the ring, so it never shows
PAYEE_ID = "25677712345"


def mojaflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "transfers", *args],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _env(database: Database, tmp_path: Path) -> dict[str, str]:
    url = database.engine.url.render_as_string(hide_password=False)
    return {"MOJAFLOW_DATABASE_URL": url, "MOJAFLOW_DATA_DIR": str(tmp_path / "cli-data")}


async def _save(database: Database, states: list[TransferState], **fields: Any) -> str:
    """A transfer through `states` (each saved as the workflows save them), the last with `fields`."""
    transfer_id = str(uuid.uuid4())
    previous = None
    for revision, state in enumerate(states):
        view = TransferView(
            transfer_id=transfer_id, direction=Direction.OUTBOUND, home_transaction_id=f"home-{transfer_id[:8]}",
            current_state=state, currency="USD", amount="100", payer=PartyView(name=PAYER_NAME),
            **(fields if revision == len(states) - 1 else {}),
        )  # fmt: skip
        record = TransferRecord(
            view=view, revision=revision, workflow_id=f"outbound-bank1-{transfer_id}", client_key="bank1",
            previous_state=previous,
        )  # fmt: skip
        assert (await database.save_transfer_with_event(record)).applied
        previous = state
    return transfer_id


async def _move(database: Database, transfer_id: str, **times: datetime) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(update(transfers).where(transfers.c.transfer_id == transfer_id).values(**times))


QUOTE = QuoteView(quote_id="q1", currency="USD", transfer_amount="100", payee_receive_amount="99", fees="1")
RECONCILING_ERROR = TransferError(code="money_step_unanswered", message="the SDK did not answer the money step")


async def test_list_names_the_transfers_in_a_state_for_longer_than_asked(database: Database, tmp_path: Path) -> None:
    stuck = await _save(database, [S.RECEIVED, S.TRANSFERRING, S.RECONCILING], last_error=RECONCILING_ERROR)
    recent = await _save(database, [S.RECEIVED, S.TRANSFERRING, S.RECONCILING])
    old_done = await _save(database, [S.RECEIVED, S.COMPLETED])
    twenty_minutes_ago = datetime.now(UTC) - timedelta(minutes=20)
    for transfer_id in (stuck, old_done):
        await _move(database, transfer_id, updated_at=twenty_minutes_ago)
    env = _env(database, tmp_path)

    listed = mojaflow(env, "list", "--state", "RECONCILING", "--older-than", "10m")

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["TRANSFER", "ID", "DIRECTION"]
    assert len(lines) == 2 and lines[1].split()[:3] == [stuck, "OUTBOUND", "RECONCILING"]
    assert "20m" in lines[1] and "money_step_unanswered" in lines[1]
    every_reconciling = mojaflow(env, "list", "--state", "RECONCILING").stdout.splitlines()[1:]
    assert [line.split()[0] for line in every_reconciling] == [stuck, recent]  # longest waiting first
    bad = mojaflow(env, "list", "--older-than", "ten minutes")
    assert bad.returncode == 2 and "'--older-than'" in bad.stderr and "10m" in bad.stderr
    assert "Traceback" not in bad.stderr


async def test_show_tells_one_transfers_story_without_personal_data(database: Database, tmp_path: Path) -> None:
    subscription = await create_subscription(
        database, "bank1", SubscriptionCreate.model_validate({
            "url": "https://hooks.example.com/in", "eventTypes": [EVENT_TYPE],
            "auth": {"type": "basic", "username": "hook", "password": "not-a-real-one"},
        }),
    )  # fmt: skip
    decided = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
    decision = DecisionRecord(state=S.WAITING_FOR_QUOTE_ACCEPTANCE, accepted=True, update_id="u1",
                              decided_at=decided, actor="api_key:3f9a0c1b2d4e")  # fmt: skip
    transfer_id = await _save(
        database, [S.RECEIVED, S.WAITING_FOR_QUOTE_ACCEPTANCE, S.HOLDING_FUNDS, S.TRANSFERRING, S.RECONCILING],
        quote=QUOTE, decisions=[decision], hold_id="hold-77", last_error=RECONCILING_ERROR, sdk_transfer_id="sdk-1",
    )  # fmt: skip
    await record_action(database, actor="api_key:3f9a0c1b2d4e", action="accept_quote", client_key="bank1",
                        transfer_id=transfer_id, detail="WAITING_FOR_QUOTE_ACCEPTANCE -> accepted")  # fmt: skip
    env = _env(database, tmp_path)

    shown = mojaflow(env, "show", transfer_id, "--json")

    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["transfer"]["currentState"] == "RECONCILING" and document["final"] is False
    assert document["transfer"]["holdId"] == "hold-77"
    assert document["workflowId"] == f"outbound-bank1-{transfer_id}"
    assert [s["state"] for s in document["states"]] == [
        "RECEIVED", "WAITING_FOR_QUOTE_ACCEPTANCE", "HOLDING_FUNDS", "TRANSFERRING", "RECONCILING"
    ]  # fmt: skip
    assert [s["sequence"] for s in document["states"]] == [1, 2, 3, 4, 5]
    assert document["states"][-1]["errorCode"] == "money_step_unanswered"
    assert document["transfer"]["decisions"][0]["actor"] == "api_key:3f9a0c1b2d4e"
    assert [(a["action"], a["actor"]) for a in document["audit"]] == [("accept_quote", "api_key:3f9a0c1b2d4e")]
    deliveries = document["webhookDeliveries"]
    assert len(deliveries) == 5 and {d["subscriptionId"] for d in deliveries} == {subscription.subscription_id}
    assert all(d["status"] == "PENDING" for d in deliveries)
    assert "name" not in document["transfer"].get("payer", {})  # sealed: the command has no ring

    text = mojaflow(env, "show", "sdk-1")  # by the SDK's id too, as text
    assert text.returncode == 0, text.stderr
    assert f"transfer    {transfer_id}  OUTBOUND  RECONCILING" in text.stdout
    assert "hold hold-77" in text.stdout
    assert "WAITING_FOR_QUOTE_ACCEPTANCE accepted by api_key:3f9a0c1b2d4e" in text.stdout
    for output in (shown.stdout, text.stdout):
        assert PAYER_NAME not in output and "Lovelace" not in output
    unknown = mojaflow(env, "show", "no-such-transfer")
    assert unknown.returncode == 1 and "no transfer no-such-transfer" in unknown.stderr


async def test_export_writes_the_days_transfers_as_csv(database: Database, tmp_path: Path) -> None:
    done = await _save(database, [S.RECEIVED, S.COMPLETED], quote=QUOTE, hold_id="hold-1")
    declined = TransferError(code="quote_declined", message="the CBS declined the quote")
    aborted = await _save(database, [S.RECEIVED, S.ABORTED], last_error=declined)
    next_day = await _save(database, [S.RECEIVED, S.COMPLETED], quote=QUOTE, hold_id="hold-2")
    day_before = await _save(database, [S.RECEIVED, S.COMPLETED])
    for transfer_id, at in (
        (done, datetime(2026, 11, 30, 0, 0, tzinfo=UTC)), (aborted, datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)),
        (next_day, datetime(2026, 12, 1, 0, 10, tzinfo=UTC)), (day_before, datetime(2026, 11, 29, 23, 30, tzinfo=UTC)),
    ):  # fmt: skip
        await _move(database, transfer_id, created_at=at)
    env = _env(database, tmp_path)

    exported = mojaflow(env, "export", "--date", "2026-11-30")

    assert exported.returncode == 0, exported.stderr
    reader = csv.DictReader(io.StringIO(exported.stdout))
    assert tuple(reader.fieldnames or ()) == EXPORT_COLUMNS
    rows = list(reader)
    assert [row["transferId"] for row in rows] == [done, aborted]  # in the order they came
    first, second = rows
    assert (first["currentState"], first["final"], first["amount"], first["fees"], first["holdId"]) == (
        "COMPLETED", "true", "100", "1", "hold-1"
    )  # fmt: skip
    assert first["receivedAt"] == "2026-11-30T00:00:00Z" and first["clientKey"] == "bank1"
    assert (second["currentState"], second["errorCode"], second["holdId"]) == ("ABORTED", "quote_declined", "")
    assert PAYER_NAME not in exported.stdout and PAYER not in exported.stdout
    assert "2 transfer(s)" in exported.stderr

    kampala = mojaflow(env, "export", "--date", "2026-12-01", "--timezone", "Africa/Kampala")  # UTC+3: from 21:00Z
    assert [row["transferId"] for row in csv.DictReader(io.StringIO(kampala.stdout))] == [aborted, next_day]
    bad = mojaflow(env, "export", "--date", "30/11/2026")
    assert bad.returncode == 2 and "'--date'" in bad.stderr and "YYYY-MM-DD" in bad.stderr


async def test_a_real_transfers_export_names_the_hold_the_cbs_committed(stack: Stack, http: httpx.AsyncClient) -> None:
    body = transfer_body(payee=PAYEE_ID, amount="12.5")
    created = await http.post(f"{stack.api_url}/transfers", json=body, headers=money_movement_headers())
    transfer = await wait_for_state(http, stack.api_url, created.json()["transferId"], {"COMPLETED"})

    exported = mojaflow(stack.env, "export", "--date", datetime.now(UTC).date().isoformat())
    shown = mojaflow(stack.env, "show", transfer["transferId"], "--json")

    assert exported.returncode == 0, exported.stderr
    row = next(r for r in csv.DictReader(io.StringIO(exported.stdout)) if r["transferId"] == transfer["transferId"])
    assert (row["currentState"], row["amount"], row["currency"]) == ("COMPLETED", "12.5", "USD")
    assert row["holdId"] and row["holdId"] == transfer["holdId"]
    hold = (await http.get(f"{stack.cbs_url}/holds/{row['holdId']}")).json()
    assert (hold["status"], Decimal(hold["amount"])) == ("COMMITTED", Decimal("12.5"))
    assert hold["holdKey"] == f"{transfer['transferId']}-hold"
    states = [s["state"] for s in json.loads(shown.stdout)["states"]]
    assert states[0] == "RECEIVED" and states[-1] == "COMPLETED" and "TRANSFERRING" in states
    for output in (exported.stdout, shown.stdout):
        assert PAYEE_ID not in output and PAYER not in output
