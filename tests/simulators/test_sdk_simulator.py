"""The SDK simulator over real HTTP: shapes as the reference captures, magic values, faults, reconciliation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.simulators._sims import PARTY_TIMEOUT_S, Sim

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def transfer_body(
    home: str | None = None, *, to: str = "25633333333", amount: str = "10", amount_type: str = "SEND"
) -> dict[str, Any]:
    return {
        "homeTransactionId": home or f"home-{uuid.uuid4()}",
        "from": {
            "idType": "MSISDN",
            "idValue": "25644444444",
            "displayName": "Payer One",
            "firstName": "Payer",
            "lastName": "One",
            "dateOfBirth": "1980-01-01",
        },
        "to": {"idType": "MSISDN", "idValue": to},
        "amountType": amount_type,
        "currency": "USD",
        "amount": amount,
        "transactionType": "TRANSFER",
        "note": "sim test",
    }


@pytest.fixture
def client(sdk_sim: Sim) -> httpx.Client:
    with httpx.Client(base_url=sdk_sim.url, timeout=10) as c:
        yield c


def start(client: httpx.Client, **kw: Any) -> tuple[str, str]:
    body = transfer_body(**kw)
    r = client.post("/transfers", json=body)
    assert r.status_code == 200, r.text
    return body["homeTransactionId"], r.json()["transferId"]


def quoted(client: httpx.Client, faults: dict[str, Any] | None = None, **kw: Any) -> tuple[str, str, dict[str, Any]]:
    home = kw.pop("home", None) or f"home-{uuid.uuid4()}"
    if faults:
        assert client.put(f"/_sim/faults/{home}", json=faults).status_code == 200
    home, tid = start(client, home=home, **kw)
    r = client.put(f"/transfers/{tid}", json={"acceptParty": True})
    assert r.status_code == 200, r.text
    return home, tid, r.json()


def sim_view(client: httpx.Client, tid: str) -> dict[str, Any]:
    r = client.get(f"/_sim/transfers/{tid}")
    assert r.status_code == 200
    return r.json()


def test_manual_three_step_happy_path(client: httpx.Client) -> None:
    body = transfer_body()
    r = client.post("/transfers", json=body)
    assert r.status_code == 200
    t = r.json()
    assert t["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    assert UUID_RE.match(t["transferId"]) and TS_RE.match(t["initiatedTimestamp"])
    assert t["direction"] == "OUTBOUND" and t["homeTransactionId"] == body["homeTransactionId"]
    assert t["from"] == body["from"] and t["note"] == "sim test" and t["amount"] == "10"
    assert t["to"] == {
        "idType": "MSISDN",
        "idValue": "25633333333",
        "fspId": "testingtoolkitdfsp",
        "firstName": "Test",
        "middleName": "TTK",
        "lastName": "Payee",
        "dateOfBirth": "1984-01-01",
    }
    party = t["getPartiesResponse"]["body"]["party"]
    assert party["partyIdInfo"] == {
        "partyIdType": "MSISDN",
        "partyIdentifier": "25633333333",
        "fspId": "testingtoolkitdfsp",
    }
    assert party["personalInfo"]["complexName"]["middleName"] == "TTK"

    r = client.put(f"/transfers/{t['transferId']}", json={"acceptParty": True})
    assert r.status_code == 200
    q = r.json()
    assert q["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE" and q["acceptParty"] is True
    assert UUID_RE.match(q["quoteId"])
    qb = q["quoteResponse"]["body"]
    assert qb["transferAmount"] == {"currency": "USD", "amount": "10"}
    assert qb["payeeReceiveAmount"] == {"currency": "USD", "amount": "10"}
    assert qb["payeeFspFee"] == {"currency": "USD", "amount": "0"}
    assert qb["payeeFspCommission"] == {"currency": "USD", "amount": "0"}
    assert TS_RE.match(qb["expiration"]) and qb["ilpPacket"] and qb["condition"]

    r = client.put(f"/transfers/{t['transferId']}", json={"acceptQuote": True})
    assert r.status_code == 200
    c = r.json()
    assert c["currentState"] == "COMPLETED" and c["acceptQuote"] is True
    assert c["fulfil"]["body"]["transferState"] == "COMMITTED"
    assert TS_RE.match(c["fulfil"]["body"]["completedTimestamp"])
    fulfilment = c["fulfil"]["body"]["fulfilment"]
    digest = hashlib.sha256(base64.urlsafe_b64decode(fulfilment + "=" * (-len(fulfilment) % 4))).digest()
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == qb["condition"]
    prepare = json.loads(c["prepare"]["body"])  # a JSON string, as the real SDK stores it
    assert prepare["transferId"] == t["transferId"] and prepare["amount"] == {"currency": "USD", "amount": "10"}
    assert TS_RE.match(prepare["expiration"]) and prepare["condition"] == qb["condition"]
    assert sim_view(client, t["transferId"]) == {
        "transferId": t["transferId"],
        "homeTransactionId": body["homeTransactionId"],
        "currentState": "COMPLETED",
        "prepareCount": 1,
        "switchState": "COMMITTED",
    }


def test_post_is_not_idempotent(client: httpx.Client) -> None:
    body = transfer_body()
    ids = {client.post("/transfers", json=body).json()["transferId"] for _ in range(2)}
    assert len(ids) == 2


def test_bad_bodies_are_400(client: httpx.Client) -> None:
    r = client.post("/transfers", json={"homeTransactionId": "x"})
    assert r.status_code == 400
    assert r.json()["statusCode"] == 400 and "from" in r.json()["message"]
    assert client.post("/transfers", content=b"{not json").status_code == 400
    assert client.post("/transfers", json={**transfer_body(), "amount": "1.00"}).status_code == 400
    assert client.post("/transfers", json={**transfer_body(), "amountType": "BOTH"}).status_code == 400
    _, tid = start(client)
    assert client.put(f"/transfers/{tid}", json={}).status_code == 400
    assert client.put(f"/transfers/{tid}", json={"acceptQuote": "yes"}).status_code == 400
    assert client.put(f"/transfers/{tid}", content=b"[").status_code == 400
    assert client.put("/_sim/faults/h", json={"moneyStepAnswer": "maybe"}).status_code == 400
    assert client.put("/_sim/switch/x", json={"transferState": "LOST"}).status_code == 400


def test_party_not_found_3204(client: httpx.Client) -> None:
    r = client.post("/transfers", json=transfer_body(to="25600000404"))
    assert r.status_code == 500
    body = r.json()
    assert body["statusCode"] == "3204" and "resolving party" in body["message"]
    state = body["transferState"]
    assert state["currentState"] == "ERROR_OCCURRED"
    assert state["lastError"] == {
        "httpStatusCode": 500,
        "mojaloopError": {"errorInformation": {"errorCode": "3204", "errorDescription": "Party not found"}},
    }


def test_party_timeout_504(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.post("/transfers", json=transfer_body(to="25600000408"))
    assert time.monotonic() - started >= PARTY_TIMEOUT_S * 0.9
    assert r.status_code == 504
    body = r.json()
    assert body["statusCode"] == "504" and body["message"].startswith("Timeout resolving payee")
    assert body["transferState"]["currentState"] == "ERROR_OCCURRED"
    assert body["transferState"]["lastError"] == {"httpStatusCode": 504}


def test_quote_rejected_5101(client: httpx.Client) -> None:
    _, tid = start(client, amount="500")
    r = client.put(f"/transfers/{tid}", json={"acceptParty": True})
    assert r.status_code == 500
    body = r.json()
    assert body["statusCode"] == "5101" and body["transferState"]["currentState"] == "ERROR_OCCURRED"
    assert body["transferState"]["lastError"]["mojaloopError"]["errorInformation"]["errorCode"] == "5101"


def test_accept_party_false_is_400(client: httpx.Client) -> None:
    _, tid = start(client)
    r = client.put(f"/transfers/{tid}", json={"acceptParty": False})
    assert r.status_code == 400
    assert r.json() == {"message": "must be equal to one of the allowed values", "statusCode": 400}


def test_unknown_transfer_put_is_500_no_cached_data(client: httpx.Client) -> None:
    tid = str(uuid.uuid4())
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 500
    assert r.json() == {
        "message": f"No cached data found for transferId: {tid}",
        "transferState": {},
        "statusCode": "500",
    }


def test_reject_quote_aborts(client: httpx.Client) -> None:
    _, tid, _ = quoted(client)
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": False})
    assert r.status_code == 200
    assert r.json()["currentState"] == "ABORTED" and r.json()["abortedReason"] == "Quote rejected by backend"
    assert sim_view(client, tid)["prepareCount"] == 0


def test_accept_quote_while_waiting_for_party_aborts(client: httpx.Client) -> None:
    _, tid = start(client)
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 200 and r.json()["currentState"] == "ABORTED"
    assert sim_view(client, tid)["prepareCount"] == 0


def test_reput_after_completed_sends_no_second_prepare(client: httpx.Client) -> None:
    _, tid, _ = quoted(client)
    first = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    again = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert again.status_code == 200 and again.json()["currentState"] == "COMPLETED"
    assert again.json()["fulfil"] == first.json()["fulfil"]
    assert sim_view(client, tid)["prepareCount"] == 1


def test_transfer_rejected_5105_then_reput_204_and_get_aborted(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, amount="600")
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 500
    body = r.json()
    assert body["statusCode"] == "5105" and body["transferState"]["currentState"] == "ERROR_OCCURRED"
    assert body["transferState"]["lastError"]["mojaloopError"]["errorInformation"]["errorCode"] == "5105"
    assert "expiration" in json.loads(body["transferState"]["prepare"]["body"])
    again = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert again.status_code == 204 and again.content == b""
    assert sim_view(client, tid)["prepareCount"] == 1
    g = client.get(f"/transfers/{tid}")
    assert g.status_code == 200
    assert g.json()["currentState"] == "COMPLETED" and g.json()["fulfil"]["body"]["transferState"] == "ABORTED"


def test_get_after_commit(client: httpx.Client) -> None:
    _, tid, _ = quoted(client)
    client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    r = client.get(f"/transfers/{tid}")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"transferId", "currentState", "initiatedTimestamp", "direction", "fulfil"}
    assert body["currentState"] == "COMPLETED" and body["fulfil"]["body"]["transferState"] == "COMMITTED"
    assert body["fulfil"]["body"]["fulfilment"] and "headers" in body["fulfil"]


def test_switch_outcome_aborted_fault(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"switchOutcome": "ABORTED"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 500 and r.json()["statusCode"] == "5105"
    g = client.get(f"/transfers/{tid}").json()
    assert g["currentState"] == "COMPLETED" and g["fulfil"]["body"]["transferState"] == "ABORTED"


def test_unknown_id_get_is_3208(client: httpx.Client) -> None:
    r = client.get(f"/transfers/{uuid.uuid4()}")
    assert r.status_code == 500
    body = r.json()
    assert body["statusCode"] == "3208"
    assert body["transferState"]["currentState"] == "ERROR_OCCURRED"
    assert body["transferState"]["lastError"] == {
        "httpStatusCode": 500,
        "mojaloopError": {"errorInformation": {"errorCode": "3208", "errorDescription": "Transfer ID not found"}},
    }


def test_prepare_lost_answers_504_and_get_3208(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"prepareLost": True, "moneyStepDelayS": 0.2})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 504
    body = r.json()
    assert body["statusCode"] == "504" and body["message"].startswith("Timeout")
    assert body["transferState"]["currentState"] == "ERROR_OCCURRED"
    assert body["transferState"]["lastError"] == {"httpStatusCode": 504}
    assert client.get(f"/transfers/{tid}").json()["statusCode"] == "3208"
    assert client.put(f"/transfers/{tid}", json={"acceptQuote": True}).status_code == 204
    assert sim_view(client, tid)["switchState"] is None


def test_prepare_expiry_fault(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"prepareLost": True, "prepareExpiresInS": 2})
    body = client.put(f"/transfers/{tid}", json={"acceptQuote": True}).json()
    expiration = datetime.fromisoformat(json.loads(body["transferState"]["prepare"]["body"])["expiration"])
    assert 0 < (expiration - datetime.now(UTC)).total_seconds() <= 2


def test_timeout_answer_but_switch_committed(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"moneyStepAnswer": "timeout"})
    assert client.put(f"/transfers/{tid}", json={"acceptQuote": True}).status_code == 504
    g = client.get(f"/transfers/{tid}").json()
    assert g["currentState"] == "COMPLETED" and g["fulfil"]["body"]["transferState"] == "COMMITTED"


def test_get_timeout_fault(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"getAnswer": "timeout"})
    client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    r = client.get(f"/transfers/{tid}")
    assert r.status_code == 504 and r.json()["statusCode"] == "504"


def test_reserved_then_switch_moves_on(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"switchOutcome": "RESERVED"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 200 and r.json()["fulfil"]["body"]["transferState"] == "RESERVED"
    assert client.get(f"/transfers/{tid}").json()["fulfil"]["body"]["transferState"] == "RESERVED"
    assert client.put(f"/_sim/switch/{tid}", json={"transferState": "COMMITTED"}).status_code == 200
    g = client.get(f"/transfers/{tid}").json()
    assert g["fulfil"]["body"]["transferState"] == "COMMITTED" and g["fulfil"]["body"]["fulfilment"]


def test_switch_state_for_inbound_transfer(client: httpx.Client) -> None:
    tid = str(uuid.uuid4())
    assert client.put(f"/_sim/switch/{tid}", json={"transferState": "RECEIVED"}).status_code == 200
    g = client.get(f"/transfers/{tid}")
    assert g.status_code == 200 and g.json()["fulfil"]["body"]["transferState"] == "RECEIVED"
    assert client.get(f"/_sim/transfers/{tid}").status_code == 404


@pytest.mark.parametrize(
    ("amount_type", "transfer_amount", "receive_amount"), [("SEND", "10", "9.5"), ("RECEIVE", "10.5", "10")]
)
def test_quote_fees(client: httpx.Client, amount_type: str, transfer_amount: str, receive_amount: str) -> None:
    _, _, q = quoted(client, faults={"quoteFee": "1", "quoteCommission": "0.5"}, amount_type=amount_type)
    qb = q["quoteResponse"]["body"]
    assert qb["transferAmount"]["amount"] == transfer_amount
    assert qb["payeeReceiveAmount"]["amount"] == receive_amount
    assert qb["payeeFspFee"]["amount"] == "1" and qb["payeeFspCommission"]["amount"] == "0.5"


def test_inconsistent_and_expired_quote(client: httpx.Client) -> None:
    _, _, q = quoted(client, faults={"quoteTransferAmountDelta": "0.01", "quoteExpiresInS": -5})
    qb = q["quoteResponse"]["body"]
    assert qb["transferAmount"]["amount"] == "10.01" and qb["payeeReceiveAmount"]["amount"] == "10"
    expiration = datetime.fromisoformat(qb["expiration"].replace("Z", "+00:00"))
    assert expiration < datetime.now(UTC)


def test_fault_set_after_creation_applies(client: httpx.Client) -> None:
    home, tid, _ = quoted(client)
    assert client.put(f"/_sim/faults/{home}", json={"switchOutcome": "ABORTED"}).status_code == 200
    assert client.put(f"/transfers/{tid}", json={"acceptQuote": True}).status_code == 500
    assert client.delete(f"/_sim/faults/{home}").status_code == 204


def test_concurrent_reput_during_money_step_sends_second_prepare(sdk_sim: Sim, client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"moneyStepDelayS": 0.6})

    async def two_puts() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=sdk_sim.url, timeout=10) as ac:
            first = asyncio.create_task(ac.put(f"/transfers/{tid}", json={"acceptQuote": True}))
            while sim_view(client, tid)["prepareCount"] < 1:  # the first prepare has reached the switch
                await asyncio.sleep(0.02)
            second = await ac.put(f"/transfers/{tid}", json={"acceptQuote": True})
            return [await first, second]

    responses = asyncio.run(two_puts())
    assert [r.status_code for r in responses] == [200, 200]
    assert sim_view(client, tid)["prepareCount"] == 2


def test_hang_never_answers(sdk_sim: Sim, client: httpx.Client) -> None:
    _, tid, _ = quoted(client, faults={"moneyStepAnswer": "hang"})
    with pytest.raises(httpx.ReadTimeout):
        httpx.put(f"{sdk_sim.url}/transfers/{tid}", json={"acceptQuote": True}, timeout=0.5)
    assert sim_view(client, tid)["prepareCount"] == 1
    assert client.get("/health").json() == {"status": "ok"}


def test_state_survives_restart(make_sdk: Any) -> None:
    process, url = make_sdk()
    process.start()
    with httpx.Client(base_url=url, timeout=10) as c:
        home, tid, _ = quoted(c, faults={"switchOutcome": "RESERVED"})
        assert c.put(f"/transfers/{tid}", json={"acceptQuote": True}).status_code == 200
        _, waiting, _ = quoted(c)
    process.stop()
    process.start()
    with httpx.Client(base_url=url, timeout=10) as c:
        assert sim_view(c, tid) == {
            "transferId": tid,
            "homeTransactionId": home,
            "currentState": "COMPLETED",
            "prepareCount": 1,
            "switchState": "RESERVED",
        }
        assert c.get(f"/transfers/{tid}").json()["fulfil"]["body"]["transferState"] == "RESERVED"
        r = c.put(f"/transfers/{waiting}", json={"acceptQuote": True})
        assert r.status_code == 200 and r.json()["currentState"] == "COMPLETED"


def test_the_bookkeeping_of_every_transfer_is_listed_with_its_home_transaction(client: httpx.Client) -> None:
    home, first = start(client)
    prepared = quoted(client)[1]
    assert client.put(f"/transfers/{prepared}", json={"acceptQuote": True}).status_code == 200
    again = start(client, home=home)[1]  # a re-POST of the same homeTransactionId is a second transfer

    listed = {t["transferId"]: t for t in client.get("/_sim/transfers").json()["transfers"]}

    assert listed[prepared] == sim_view(client, prepared)
    assert (listed[prepared]["prepareCount"], listed[prepared]["switchState"]) == (1, "COMMITTED")
    same_home = [t for t in listed.values() if t["homeTransactionId"] == home]
    assert {t["transferId"] for t in same_home} == {first, again}
    assert all(t["prepareCount"] == 0 for t in same_home)
