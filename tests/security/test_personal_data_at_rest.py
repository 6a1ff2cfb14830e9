"""Personal data at rest: after outbound and inbound transfers on the real stack, our database file holds no
payer's or payee's name, party id or account in clear, yet `GET /transfers/{id}` still answers them; the file is
0600. Retention purges the personal fields of final transfers once they are old enough (a clock we control, on
SQLite and PostgreSQL), and the worker's scheduled job does run it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mojaflow.database import Database
from mojaflow.key_rotation import reseal_personal_data
from mojaflow.keys import KeyRing
from mojaflow.models import Direction, PartyView, TransferRecord, TransferState, TransferView
from mojaflow.retention import purge_personal_data
from tests.conftest import Stack
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.postgres import empty_database_url
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state

REMOTE_PAYER = ("Remote Payer", "25611111111")  # tests/inbound/flow.py's payer at the other DFSP
OUTBOUND_PAYEE = ("Test Payee", "25633333333")  # the SDK simulator's payee


def database_bytes(data_dir: Path) -> bytes:
    """Everything SQLite keeps of our database: the file, its write-ahead log and shared memory."""
    files = [data_dir / name for name in ("mojaflow.db", "mojaflow.db-wal", "mojaflow.db-shm")]
    return b"".join(path.read_bytes() for path in files if path.exists())


async def _outbound(stack: Stack, http: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    payer, _ = await new_payer(http, stack.cbs_url)
    response = await http.post(
        f"{stack.api_url}/transfers",
        json=transfer_body(payer=payer, payee=OUTBOUND_PAYEE[1]),
        headers={**money_movement_headers(), "Prefer": "wait=15"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["currentState"] == "COMPLETED"
    return response.json(), payer


async def _inbound(stack: Stack, http: httpx.AsyncClient) -> tuple[str, list[str]]:
    """A committed inbound transfer: its id and its payee's MSISDN and account."""
    payee = await new_payee(http, stack.cbs_url)
    quote = await http.post(f"{stack.backend_url}/quoterequests", json=quote_request(payee))
    assert quote.status_code == 200, quote.text
    reserved = await http.post(f"{stack.backend_url}/transfers", json=transfer_request(payee, quote.json()))
    assert reserved.status_code == 200, reserved.text
    transfer_id = quote.json()["transactionId"]
    await switch_records(http, stack.sdk_url, transfer_id, "COMMITTED")
    notified = await http.put(
        f"{stack.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
    )
    assert notified.status_code == 200, notified.text
    await wait_for_state(http, stack.api_url, transfer_id, {"COMMITTED"})
    return transfer_id, [payee.msisdn, payee.account_id]


async def test_no_name_party_id_or_account_in_clear_in_the_database_yet_get_answers_them(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    outbound, payer_msisdn = await _outbound(stack, http)
    inbound_id, inbound_payee = await _inbound(stack, http)

    raw = database_bytes(stack.data_dir)
    shown_out = (await http.get(f"{stack.api_url}/transfers/{outbound['transferId']}")).json()
    shown_in = (await http.get(f"{stack.api_url}/transfers/{inbound_id}")).json()

    for secret in [payer_msisdn, *OUTBOUND_PAYEE, *REMOTE_PAYER, "Inbound Payee", *inbound_payee]:
        assert secret.encode() not in raw, f"{secret} in clear in the database"
    assert shown_out["payee"] == {"name": OUTBOUND_PAYEE[0], "fspId": "testingtoolkitdfsp"}
    assert shown_in["payer"] == {"name": REMOTE_PAYER[0], "fspId": "testingtoolkitdfsp"}
    assert shown_in["payee"]["name"] == "Inbound Payee"
    with sqlite3.connect(stack.data_dir / "mojaflow.db") as connection:
        rows = connection.execute(
            "SELECT json_extract(resource, '$.sealed.keyId'), json_extract(resource, '$.amount') FROM transfers"
            " WHERE transfer_id IN (?, ?)",
            (outbound["transferId"], inbound_id),
        ).fetchall()
    assert len(rows) == 2 and all(key_id and amount for key_id, amount in rows)  # sealed; amounts in clear


def test_the_database_file_and_the_key_rings_are_private(stack: Stack) -> None:
    private = ["mojaflow.db", "mojaflow.db-wal", "mojaflow.db-shm", "secrets.key", "party-hash.key"]
    modes = {
        name: (stack.data_dir / name).stat().st_mode & 0o777 for name in private if (stack.data_dir / name).exists()
    }

    assert {"mojaflow.db", "secrets.key", "party-hash.key"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)


# -- retention and re-encryption, in process on both engines -------------------------------------------


_KEYS: dict[str, bytes] = {}  # one key per id, for the whole module


def _ring(*ids: str) -> KeyRing:
    return KeyRing("MOJAFLOW_SECRETS_KEYS", tuple((key_id, _KEYS.setdefault(key_id, os.urandom(32))) for key_id in ids))


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database of each engine for each test."""
    url = await empty_database_url(request, tmp_path)
    database = Database(url)
    await database.create_schema()
    await database.close()
    yield url


def _record(state: TransferState) -> TransferRecord:
    transfer_id = str(uuid.uuid4())
    view = TransferView(
        transfer_id=transfer_id,
        direction=Direction.INBOUND,
        current_state=state,
        currency="USD",
        amount="25",
        payer=PartyView(name="Ann Payer", fsp_id="otherdfsp"),
        payee=PartyView(name="Bob Payee", fsp_id="ourdfsp"),
        sdk_transfer_id=transfer_id,
    )
    return TransferRecord(view=view, revision=1, workflow_id=f"wf-{transfer_id}", client_key="bank")


async def test_retention_purges_the_names_of_final_transfers_once_old_enough(url: str) -> None:
    database = Database(url, secrets=_ring("k1"))
    final, running = _record(TransferState.COMMITTED), _record(TransferState.RESERVED)
    for record in (final, running):
        await database.save_transfer(record)
    quote_id = str(uuid.uuid4())
    await database.save_quote(quote_id, "tx", {"quote_id": quote_id, "account_id": "acc-9", "payee_name": "Bob Payee"})
    saved_at, retention = datetime.now(UTC), timedelta(days=90)

    early = await purge_personal_data(database, now=saved_at + timedelta(days=89), retention=retention)
    kept = await database.find_transfer(final.view.transfer_id)
    due = await purge_personal_data(database, now=saved_at + timedelta(days=91), retention=retention)
    again = await purge_personal_data(database, now=saved_at + timedelta(days=92), retention=retention)
    purged = await database.find_transfer(final.view.transfer_id)
    untouched = await database.find_transfer(running.view.transfer_id)
    quote = await database.get_quote(quote_id)
    await database.close()

    assert (early.transfers, early.quotes) == (0, 0)
    assert kept is not None and kept.view.payer == PartyView(name="Ann Payer", fsp_id="otherdfsp")
    assert (due.transfers, due.quotes) == (1, 1)
    assert (again.transfers, again.quotes) == (0, 0)
    assert purged is not None
    assert (purged.view.payer, purged.view.payee) == (PartyView(fsp_id="otherdfsp"), PartyView(fsp_id="ourdfsp"))
    assert (purged.view.amount, purged.view.current_state, purged.view.sdk_transfer_id) == (
        "25", TransferState.COMMITTED, final.view.transfer_id,
    )  # fmt: skip
    assert untouched is not None and untouched.view.payee == PartyView(name="Bob Payee", fsp_id="ourdfsp")
    assert quote is None


async def test_a_re_encryption_moves_every_sealed_field_to_the_new_first_key(url: str) -> None:
    old = Database(url, secrets=_ring("k1"))
    record = _record(TransferState.COMMITTED)
    await old.save_transfer(record)
    quote_id = str(uuid.uuid4())
    await old.save_quote(quote_id, "tx", {"quote_id": quote_id, "account_id": "acc-9", "payee_name": "Bob Payee"})
    await old.close()

    rotated = Database(url, secrets=_ring("k2", "k1"))
    report = await reseal_personal_data(rotated)
    again = await reseal_personal_data(rotated)
    await rotated.close()
    only_new = Database(url, secrets=_ring("k2"))  # the old key retired: everything still opens
    stored = await only_new.find_transfer(record.view.transfer_id)
    quote = await only_new.get_quote(quote_id)
    await only_new.close()

    assert (report.transfers, report.quotes, report.unreadable) == (1, 1, {})
    assert (again.transfers, again.quotes) == (0, 0)
    assert stored is not None and stored.view.payer == PartyView(name="Ann Payer", fsp_id="otherdfsp")
    assert quote is not None and (quote["account_id"], quote["payee_name"]) == ("acc-9", "Bob Payee")


# -- the scheduled job, on real processes -------------------------------------------------------------


async def test_the_worker_purges_on_schedule(stack: Stack, http: httpx.AsyncClient, tmp_path: Path) -> None:
    """A retention of 10 s, checked every half second: the names go, the transfer stays."""
    settings = {
        "MOJAFLOW_DATA_DIR": str(tmp_path),
        "MOJAFLOW_PERSONAL_DATA_RETENTION_DAYS": str(10 / 86400),
        "MOJAFLOW_PERSONAL_DATA_PURGE_INTERVAL_S": "0.5",
    }
    with stack.sibling(tmp_path, **settings) as own:
        done, _ = await _outbound(own, http)
        fresh = (await http.get(f"{own.api_url}/transfers/{done['transferId']}")).json()
        purged = await _until(http, f"{own.api_url}/transfers/{done['transferId']}", lambda t: "name" not in t["payee"])

    assert fresh["payee"]["name"] == OUTBOUND_PAYEE[0]
    assert purged["payee"] == {"fspId": "testingtoolkitdfsp"}
    assert (purged["currentState"], purged["amount"]) == ("COMPLETED", done["amount"])
    assert "personal data purged: 1 transfers" in (tmp_path / "worker.log").read_text()


async def _until(http: httpx.AsyncClient, url: str, condition: Any, timeout_s: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = (await http.get(url)).json()
        if condition(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"never came: last {last}")
