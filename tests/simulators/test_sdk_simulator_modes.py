"""SDK simulator modes over real HTTP: auto-accept, money-step answers, fulfilment faults, 3208 then COMMITTED,
and a field-by-field comparison of the simulator's answers against the captures of the real SDK 18.0.2."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simulators._sims import Sim
from tests.simulators.test_sdk_simulator import quoted, sim_view, start, transfer_body

# Copies of the real SDK 18.0.2's captures (reference/mojaloop-stack/captures/ of the shared material), kept in
# the repository so the comparison runs wherever the tests run.
CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk" / "captures"
FIXED_KEYS = {"statusCode", "message", "currentState", "transferState", "errorCode", "errorDescription", "direction"}


@pytest.fixture
def client(sdk_sim: Sim) -> httpx.Client:
    with httpx.Client(base_url=sdk_sim.url, timeout=10) as c:
        yield c


def condition_of(fulfilment: str) -> str:
    raw = base64.urlsafe_b64decode(fulfilment + "=" * (-len(fulfilment) % 4))
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def set_faults(client: httpx.Client, home: str, **faults: Any) -> None:
    r = client.put(f"/_sim/faults/{home}", json=faults)
    assert r.status_code == 200, r.text


def capture(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / f"{name}.json").read_text())


def same_shape(ours: Any, real: Any, ids: dict[str, str], path: str = "$") -> None:
    """Same keys recursively, same types, same fixed values (with the captured ids replaced by ours)."""
    assert type(ours) is type(real), f"{path}: {type(ours).__name__} != {type(real).__name__}"
    if isinstance(real, dict):
        assert set(ours) == set(real), f"{path}: keys {sorted(set(ours) ^ set(real))} differ"
        for key in real:
            if key in FIXED_KEYS and isinstance(real[key], str):
                expected = real[key]
                for old, new in ids.items():
                    expected = expected.replace(old, new)
                assert ours[key] == expected, f"{path}.{key}: {ours[key]!r} != {expected!r}"
            same_shape(ours[key], real[key], ids, f"{path}.{key}")
    elif isinstance(real, list):
        for i, (a, b) in enumerate(zip(ours, real, strict=False)):
            same_shape(a, b, ids, f"{path}[{i}]")


def compare(r: httpx.Response, name: str, ours_id: str) -> None:
    cap = capture(name)
    assert r.status_code == cap["response"]["status"], r.text
    real = cap["response"]["body"]
    if real is None:
        assert r.content == b""
        return
    real_id = cap["request"]["url"].rsplit("/", 1)[-1]
    same_shape(r.json(), real, {real_id: ours_id})


# -- auto-accept -----------------------------------------------------------------------------------------------


def test_auto_accept_party_post_answers_quote(client: httpx.Client) -> None:
    home = f"home-{uuid.uuid4()}"
    set_faults(client, home, autoAccept="party")
    r = client.post("/transfers", json=transfer_body(home))
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["currentState"] == "WAITING_FOR_QUOTE_ACCEPTANCE" and t["quoteResponse"]["body"]["condition"]
    assert sim_view(client, t["transferId"])["prepareCount"] == 0
    r = client.put(f"/transfers/{t['transferId']}", json={"acceptQuote": True})
    assert r.status_code == 200 and r.json()["currentState"] == "COMPLETED"
    assert sim_view(client, t["transferId"])["prepareCount"] == 1


def test_auto_accept_quotes_accept_party_runs_to_prepare(client: httpx.Client) -> None:
    home = f"home-{uuid.uuid4()}"
    set_faults(client, home, autoAccept="quotes")
    _, tid = start(client, home=home)
    r = client.put(f"/transfers/{tid}", json={"acceptParty": True})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["currentState"] == "COMPLETED" and c["fulfil"]["body"]["transferState"] == "COMMITTED"
    assert condition_of(c["fulfil"]["body"]["fulfilment"]) == c["quoteResponse"]["body"]["condition"]
    view = sim_view(client, tid)
    assert view["prepareCount"] == 1 and view["switchState"] == "COMMITTED"


def test_auto_accept_both_post_answers_completed(client: httpx.Client) -> None:
    home = f"home-{uuid.uuid4()}"
    set_faults(client, home, autoAccept="both")
    r = client.post("/transfers", json=transfer_body(home))
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["currentState"] == "COMPLETED" and "acceptParty" not in c and "acceptQuote" not in c
    assert condition_of(c["fulfil"]["body"]["fulfilment"]) == c["quoteResponse"]["body"]["condition"]
    view = sim_view(client, c["transferId"])
    assert view["prepareCount"] == 1 and view["switchState"] == "COMMITTED"
    same_shape(c, capture("out_transfer_auto")["response"]["body"], {})


# -- money-step answers ----------------------------------------------------------------------------------------


def test_aborted_200(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, {"moneyStepAnswer": "aborted_200"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 200 and r.json()["currentState"] == "ABORTED" and "fulfil" not in r.json()
    assert sim_view(client, tid)["prepareCount"] == 1


def test_fulfil_aborted(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, {"moneyStepAnswer": "fulfil_aborted"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    body = r.json()
    assert r.status_code == 200 and body["currentState"] == "COMPLETED"
    assert body["fulfil"]["body"]["transferState"] == "ABORTED" and "fulfilment" not in body["fulfil"]["body"]


def test_no_cached_data_matches_capture_and_get_after(client: httpx.Client) -> None:
    _, tid, q = quoted(client, {"moneyStepAnswer": "no_cached_data"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    compare(r, "out_put_unknown_id", tid)
    g = client.get(f"/transfers/{tid}")  # the switch committed meanwhile
    compare(g, "out_money_step_504_then_get", tid)
    assert condition_of(g.json()["fulfil"]["body"]["fulfilment"]) == q["quoteResponse"]["body"]["condition"]
    unknown = str(uuid.uuid4())
    compare(client.put(f"/transfers/{unknown}", json={"acceptQuote": True}), "out_put_unknown_id", unknown)


def test_error_callback_while_switch_committed(client: httpx.Client) -> None:
    _, tid, q = quoted(client, {"moneyStepAnswer": "error_callback"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    compare(r, "out_reput_after_error_first_accept", tid)
    assert r.json()["transferState"]["transferId"] == tid
    compare(client.put(f"/transfers/{tid}", json={"acceptQuote": True}), "out_reput_after_error", tid)
    g = client.get(f"/transfers/{tid}")
    compare(g, "out_transfer_rejected_get", tid)
    assert condition_of(g.json()["fulfil"]["body"]["fulfilment"]) == q["quoteResponse"]["body"]["condition"]
    assert sim_view(client, tid)["prepareCount"] == 1


def test_rejected_5105_reput_204_and_get(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, amount="600")
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    compare(r, "out_reput_after_error_first_accept", tid)
    compare(client.put(f"/transfers/{tid}", json={"acceptQuote": True}), "out_reput_after_error", tid)
    g = client.get(f"/transfers/{tid}")
    assert g.status_code == 200 and g.json()["fulfil"]["body"]["transferState"] == "ABORTED"


def test_money_step_504_matches_capture_then_get(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, {"moneyStepAnswer": "timeout"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    compare(r, "out_money_step_504", tid)
    compare(client.put(f"/transfers/{tid}", json={"acceptQuote": True}), "out_reput_after_504", tid)
    compare(client.get(f"/transfers/{tid}"), "out_money_step_504_then_get", tid)


# -- fulfilment faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["valid", "wrong", "other_transfer", "missing"])
def test_fulfilment_faults(client: httpx.Client, mode: str) -> None:
    quoted(client)  # at least one other transfer exists
    _, tid, q = quoted(client, {"fulfilment": mode})
    condition = q["quoteResponse"]["body"]["condition"]
    put = client.put(f"/transfers/{tid}", json={"acceptQuote": True}).json()["fulfil"]["body"]
    get = client.get(f"/transfers/{tid}").json()["fulfil"]["body"]
    for body in (put, get):
        assert body["transferState"] == "COMMITTED"
        if mode == "missing":
            assert "fulfilment" not in body
            continue
        raw = base64.urlsafe_b64decode(body["fulfilment"] + "=" * (-len(body["fulfilment"]) % 4))
        assert len(raw) == 32
        assert (condition_of(body["fulfilment"]) == condition) is (mode == "valid")


# -- 3208 then COMMITTED -----------------------------------------------------------------------------------------


def test_not_found_answers_then_committed(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, {"notFoundAnswers": 2})
    assert client.put(f"/transfers/{tid}", json={"acceptQuote": True}).status_code == 200
    for _ in range(2):
        compare(client.get(f"/transfers/{tid}"), "out_reconcile_get_3208", tid)
    compare(client.get(f"/transfers/{tid}"), "out_money_step_504_then_get", tid)


def test_unknown_get_is_3208_as_captured(client: httpx.Client) -> None:
    tid = str(uuid.uuid4())
    compare(client.get(f"/transfers/{tid}"), "out_reconcile_get_3208", tid)


def test_prepare_arrives_late(client: httpx.Client) -> None:
    _, tid, _ = quoted(client, {"prepareArrivesAfterS": 1.0, "moneyStepAnswer": "timeout"})
    r = client.put(f"/transfers/{tid}", json={"acceptQuote": True})
    assert r.status_code == 504 and r.json()["transferState"]["transferId"] == tid
    compare(client.get(f"/transfers/{tid}"), "out_reconcile_get_3208", tid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        g = client.get(f"/transfers/{tid}")
        if g.status_code == 200:
            break
        time.sleep(0.2)
    compare(g, "out_money_step_504_then_get", tid)
    assert sim_view(client, tid)["prepareCount"] == 1
