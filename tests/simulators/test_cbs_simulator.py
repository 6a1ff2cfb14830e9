"""The CBS simulator over real HTTP: seed, holds, credit reservations, refusals, idempotency, persistence."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simulators._sims import Sim


@pytest.fixture
def client(cbs_sim: Sim) -> httpx.Client:
    with httpx.Client(base_url=cbs_sim.url, timeout=10) as c:
        yield c


def new_account(client: httpx.Client, balance: str = "100.00", **extra: Any) -> str:
    """A fresh account with its own MSISDN, so tests never share balances."""
    account_id = f"acc-{uuid.uuid4().hex[:12]}"
    body = {
        "accountId": account_id,
        "currency": "USD",
        "balance": balance,
        "holder": {"displayName": "Test Holder", "firstName": "Test", "lastName": "Holder"},
        "parties": [{"idType": "MSISDN", "idValue": f"2567{uuid.uuid4().int % 10**8:08d}"}],
        **extra,
    }
    r = client.post("/_sim/accounts", json=body)
    assert r.status_code == 201, r.text
    return account_id


def account(client: httpx.Client, account_id: str) -> dict[str, Any]:
    r = client.get(f"/accounts/{account_id}")
    assert r.status_code == 200
    return r.json()


def hold(
    client: httpx.Client, account_id: str, amount: str, key: str | None = None, currency: str = "USD"
) -> httpx.Response:
    return client.post(
        "/holds",
        json={"holdKey": key or str(uuid.uuid4()), "accountId": account_id, "amount": amount, "currency": currency},
    )


def credit(
    client: httpx.Client, account_id: str, amount: str, key: str | None = None, currency: str = "USD"
) -> httpx.Response:
    return client.post(
        "/credits",
        json={
            "reservationKey": key or str(uuid.uuid4()),
            "accountId": account_id,
            "amount": amount,
            "currency": currency,
        },
    )


def test_default_seed(client: httpx.Client) -> None:
    payer = client.get("/parties/MSISDN/25644444444").json()
    assert payer == {
        "idType": "MSISDN",
        "idValue": "25644444444",
        "displayName": "Payer One",
        "firstName": "Payer",
        "lastName": "One",
        "dateOfBirth": "1980-01-01",
        "accountId": payer["accountId"],
        "currency": "USD",
        "status": "active",
    }
    payee = client.get("/parties/MSISDN/25622222222").json()
    assert (payee["displayName"], payee["firstName"], payee["middleName"], payee["lastName"], payee["dateOfBirth"]) == (
        "Fake Core Payee",
        "Fake",
        "Core",
        "Payee",
        "1990-01-01",
    )
    for party in (payer, payee):
        acc = account(client, party["accountId"])
        assert acc["balance"] == "1000000.00" and acc["status"] == "active" and acc["currency"] == "USD"
    assert client.get(f"/parties/ACCOUNT_ID/{payer['accountId']}").json()["firstName"] == "Payer"


def test_party_errors(client: httpx.Client) -> None:
    r = client.get("/parties/EMAIL/someone")
    assert r.status_code == 400 and r.json()["code"] == "unsupported_id_type"
    r = client.get("/parties/MSISDN/25699999999")
    assert r.status_code == 404 and r.json() == {"code": "party_not_found", "message": "party not found"}
    assert client.get("/parties/ACCOUNT_ID/acc-none").status_code == 404
    assert client.get("/accounts/acc-none").json()["code"] == "account_not_found"


def test_party_with_sub_id(client: httpx.Client) -> None:
    account_id = f"acc-{uuid.uuid4().hex[:12]}"
    msisdn = f"2568{uuid.uuid4().int % 10**8:08d}"
    client.post(
        "/_sim/accounts",
        json={
            "accountId": account_id,
            "currency": "USD",
            "balance": "0",
            "holder": {"displayName": "Sub Holder", "firstName": "Sub", "lastName": "Holder"},
            "parties": [{"idType": "MSISDN", "idValue": msisdn, "idSubValue": "wallet"}],
        },
    )
    r = client.get(f"/parties/MSISDN/{msisdn}/wallet")
    assert r.status_code == 200 and r.json()["idSubValue"] == "wallet" and r.json()["accountId"] == account_id
    assert client.get(f"/parties/MSISDN/{msisdn}").status_code == 404


def test_hold_then_commit_moves_balance_once(client: httpx.Client) -> None:
    acc = new_account(client)
    r = hold(client, acc, "10.5")
    assert r.status_code == 201
    h = r.json()
    assert h["status"] == "HELD" and h["amount"] == "10.50"
    a = account(client, acc)
    assert (a["balance"], a["held"], a["available"]) == ("100.00", "10.50", "89.50")
    for _ in range(2):
        c = client.post(f"/holds/{h['holdId']}/commit")
        assert c.status_code == 200 and c.json()["status"] == "COMMITTED"
    a = account(client, acc)
    assert (a["balance"], a["held"], a["available"]) == ("89.50", "0.00", "89.50")
    r = client.post(f"/holds/{h['holdId']}/release")
    assert r.status_code == 409 and r.json()["code"] == "hold_committed"
    assert client.get(f"/holds/{h['holdId']}").json()["status"] == "COMMITTED"


def test_hold_idempotency(client: httpx.Client) -> None:
    acc = new_account(client)
    first, again = hold(client, acc, "10", key="k-" + acc), hold(client, acc, "10.00", key="k-" + acc)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    r = hold(client, acc, "11", key="k-" + acc)
    assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
    assert account(client, acc)["held"] == "10.00"


def test_concurrent_duplicate_holds_make_one(cbs_sim: Sim, client: httpx.Client) -> None:
    acc = new_account(client)
    body = {"holdKey": f"conc-{acc}", "accountId": acc, "amount": "7", "currency": "USD"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=cbs_sim.url, timeout=10) as ac:
            return await asyncio.gather(*(ac.post("/holds", json=body) for _ in range(10)))

    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["holdId"] for r in responses}) == 1
    assert account(client, acc)["held"] == "7.00"


def test_insufficient_funds(client: httpx.Client) -> None:
    acc = new_account(client)
    r = hold(client, acc, "100.01")
    assert r.status_code == 409 and r.json()["code"] == "insufficient_funds"
    assert hold(client, acc, "60").status_code == 201
    assert hold(client, acc, "40.01").json()["code"] == "insufficient_funds"
    assert account(client, acc)["held"] == "60.00"


def test_release_then_commit_is_409(client: httpx.Client) -> None:
    acc = new_account(client)
    h = hold(client, acc, "30").json()
    for _ in range(2):
        r = client.post(f"/holds/{h['holdId']}/release")
        assert r.status_code == 200 and r.json()["status"] == "RELEASED"
    a = account(client, acc)
    assert (a["balance"], a["held"], a["available"]) == ("100.00", "0.00", "100.00")
    r = client.post(f"/holds/{h['holdId']}/commit")
    assert r.status_code == 409 and r.json()["code"] == "hold_released"
    assert client.post("/holds/hold-none/commit").json()["code"] == "hold_not_found"
    assert client.get("/holds/hold-none").status_code == 404


def test_credits_reserve_commit_release(client: httpx.Client) -> None:
    acc = new_account(client)
    r = client.post("/credit-checks", json={"accountId": acc, "amount": "25", "currency": "USD"})
    assert r.status_code == 200 and r.json() == {"accountId": acc, "allowed": True}
    r = credit(client, acc, "25", key="ck-" + acc)
    assert r.status_code == 201 and r.json()["status"] == "RESERVED" and r.json()["amount"] == "25.00"
    assert credit(client, acc, "25", key="ck-" + acc).json() == r.json()
    assert credit(client, acc, "26", key="ck-" + acc).json()["code"] == "idempotency_conflict"
    assert account(client, acc)["pendingCredits"] == "25.00"
    res = r.json()["reservationId"]
    for _ in range(2):
        assert client.post(f"/credits/{res}/commit").json()["status"] == "COMMITTED"
    a = account(client, acc)
    assert (a["balance"], a["pendingCredits"]) == ("125.00", "0.00")
    assert client.post(f"/credits/{res}/release").json()["code"] == "reservation_committed"

    other = credit(client, acc, "5").json()["reservationId"]
    assert account(client, acc)["pendingCredits"] == "5.00"
    assert client.post(f"/credits/{other}/release").json()["status"] == "RELEASED"
    a = account(client, acc)
    assert (a["balance"], a["pendingCredits"]) == ("125.00", "0.00")
    r = client.post(f"/credits/{other}/commit")
    assert r.status_code == 409 and r.json()["code"] == "reservation_released"
    assert client.get(f"/credits/{other}").json()["status"] == "RELEASED"
    assert client.get("/credits/res-none").json()["code"] == "reservation_not_found"


@pytest.mark.parametrize("status", ["blocked", "closed"])
def test_blocked_and_closed_accounts(client: httpx.Client, status: str) -> None:
    acc = new_account(client)
    h = hold(client, acc, "10").json()
    r = client.patch(f"/_sim/accounts/{acc}", json={"status": status})
    assert r.status_code == 200 and r.json()["status"] == status
    code = f"account_{status}"
    assert hold(client, acc, "1").json()["code"] == code
    assert (
        client.post("/credit-checks", json={"accountId": acc, "amount": "1", "currency": "USD"}).json()["code"] == code
    )
    r = credit(client, acc, "1")
    assert r.status_code == 409 and r.json()["code"] == code
    assert client.post(f"/holds/{h['holdId']}/release").status_code == 200  # finishing earlier work still works


def test_currency_refusals(client: httpx.Client) -> None:
    acc = new_account(client)
    assert hold(client, acc, "1", currency="EUR").json()["code"] == "currency_mismatch"
    r = client.post("/credit-checks", json={"accountId": acc, "amount": "1", "currency": "EUR"})
    assert r.status_code == 409 and r.json()["code"] == "unsupported_currency"


def test_limits(client: httpx.Client) -> None:
    acc = new_account(client, limits={"maxCreditAmount": "50", "maxBalance": "200"})
    assert account(client, acc)["limits"] == {"maxCreditAmount": "50.00", "maxBalance": "200.00"}
    check = lambda amount: client.post("/credit-checks", json={"accountId": acc, "amount": amount, "currency": "USD"})  # noqa: E731
    assert check("50").status_code == 200
    r = check("50.01")
    assert r.status_code == 409 and r.json()["code"] == "limit_exceeded"
    assert credit(client, acc, "50").status_code == 201
    assert credit(client, acc, "50").status_code == 201  # 100 + 100 pending = 200: at the limit
    assert credit(client, acc, "0.01").json()["code"] == "limit_exceeded"


def test_bad_bodies_are_400(client: httpx.Client) -> None:
    acc = new_account(client)
    for body in (
        {"holdKey": "k", "accountId": acc, "amount": 10, "currency": "USD"},
        {"holdKey": "k", "accountId": acc, "amount": "-1", "currency": "USD"},
        {"holdKey": "k", "accountId": acc, "amount": "0", "currency": "USD"},
        {"holdKey": "k", "accountId": acc, "amount": "1.001", "currency": "USD"},
        {"accountId": acc, "amount": "1", "currency": "USD"},
        [],
    ):
        r = client.post("/holds", json=body)
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", body
    assert client.post("/holds", content=b"{").status_code == 400
    assert client.post("/credits", content=b"").status_code == 400
    assert client.patch(f"/_sim/accounts/{acc}", json={"status": "frozen"}).status_code == 400


def test_state_survives_restart_and_seed_file(make_cbs: Any, tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            [
                {
                    "accountId": "acc-x",
                    "currency": "EUR",
                    "balance": "5.00",
                    "holder": {"displayName": "X Y", "firstName": "X", "lastName": "Y"},
                    "parties": [{"idType": "MSISDN", "idValue": "32400000001"}],
                }
            ]
        )
    )
    process, url = make_cbs(seed=seed)
    process.start()
    with httpx.Client(base_url=url) as c:
        assert c.get("/parties/MSISDN/25644444444").status_code == 404  # the seed file replaced the default
        hold_id = hold(c, "acc-x", "2", currency="EUR").json()["holdId"]
    process.stop()
    process.start()
    with httpx.Client(base_url=url) as c:
        assert account(c, "acc-x")["held"] == "2.00"
        assert c.post(f"/holds/{hold_id}/commit").json()["status"] == "COMMITTED"
        assert account(c, "acc-x")["balance"] == "3.00"
