"""The webhook receiver simulator over real HTTP: it keeps what it got, its fault switch (status, delay, hold until
released or the caller goes away) and its auth checks (API keys, Basic, bearer tokens of the real token server)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.webhook_peers import Peer, oauth_token_server, webhook_receiver

RECEIVER_PASSWORD = "rcv-pw-5f0c2e9a"
RECEIVER_API_KEY = "rcv-key-93ab71d0"
RECEIVER_CLIENT_SECRET = "rcv-client-secret-6d1f"

EVENT = {
    "id": "AbC123xyz",
    "event_type": "moneymovementservices.payment.status_updated",
    "data": {"transferId": "tr-1", "currentState": "COMPLETED", "sequence": 6},
}


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = webhook_receiver(tmp_path_factory.mktemp("webhook-receiver"))
    with peer.process.start():
        yield peer


@pytest.fixture
def sim(receiver: Peer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=receiver.url, timeout=10) as client:
        for reset in ("/_sim/events", "/_sim/faults", "/_sim/auth"):
            client.delete(reset).raise_for_status()
        yield client
        client.post("/_sim/release")
        for reset in ("/_sim/faults", "/_sim/auth"):
            client.delete(reset)


def events(sim: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    answer = sim.get("/_sim/events", params=query)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["events"])


def wait_for(condition: Callable[[], Any], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


def post(sim: httpx.Client, path: str = "/hooks/mojaloop", **kwargs: Any) -> httpx.Response:
    if "json" not in kwargs:
        kwargs.setdefault("content", json.dumps(EVENT, separators=(",", ":")))
        kwargs.setdefault("headers", {"content-type": "application/json"})
    return sim.post(path, **kwargs)


def test_answers_200_and_keeps_headers_and_the_body_byte_for_byte(sim: httpx.Client) -> None:
    raw = '{"id":"AbC123xyz",  "event_type":"x","data":{"transferId":"tr-1","note":"caf\u00e9"}}'
    answer = post(sim, content=raw.encode(), headers={"content-type": "application/json", "webhook-id": "AbC123xyz"})

    assert answer.status_code == 200
    assert answer.json() == {"received": True}
    [got] = events(sim)
    assert got["path"] == "/hooks/mojaloop"
    assert got["rawBody"] == raw
    assert got["body"]["data"]["note"] == "caf\u00e9"
    assert got["headers"]["webhook-id"] == "AbC123xyz"
    assert (got["eventId"], got["transferId"]) == ("AbC123xyz", "tr-1")
    assert (got["status"], got["outcome"], got["authOk"]) == (200, "answered", True)


def test_events_filter_by_event_and_transfer_and_page(sim: httpx.Client) -> None:
    for event_id, transfer in [("e1", "t1"), ("e2", "t1"), ("e1", "t1"), ("e3", "t2")]:
        post(sim, json={**EVENT, "id": event_id, "data": {"transferId": transfer}}, headers={})
    post(sim, content=b"not json", headers={})

    assert [e["eventId"] for e in events(sim, transferId="t1")] == ["e1", "e2", "e1"]
    assert len(events(sim, eventId="e1")) == 2
    first, *_ = everything = events(sim)
    assert len(everything) == 5 and everything[-1]["body"] is None
    page = sim.get("/_sim/events", params={"after": first["seq"], "limit": 2}).json()
    assert page["count"] == 5 and [e["seq"] for e in page["events"]] == [first["seq"] + 1, first["seq"] + 2]

    assert sim.delete("/_sim/events").status_code == 204
    assert events(sim) == []


def test_status_fault_for_a_number_of_requests_then_recovers(sim: httpx.Client) -> None:
    assert sim.put("/_sim/faults", json={"status": 500, "times": 2}).json()["remaining"] == 2

    statuses = [post(sim).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert [e["status"] for e in events(sim)] == [500, 500, 200]
    assert sim.get("/_sim/faults").json()["fault"] is None


@pytest.mark.parametrize("status", [201, 204, 400, 502])
def test_any_status_can_be_answered(sim: httpx.Client, status: int) -> None:
    sim.put("/_sim/faults", json={"status": status}).raise_for_status()

    answer = post(sim)

    assert answer.status_code == status
    assert (answer.content == b"") == (status == 204)


def test_a_redirect_names_a_location_that_a_following_caller_would_show_up_at(sim: httpx.Client) -> None:
    sim.put("/_sim/faults", json={"status": 301, "location": "/moved-here", "times": 1}).raise_for_status()

    answer = post(sim)

    assert answer.status_code == 301 and answer.headers["location"] == "/moved-here"
    assert [e["path"] for e in events(sim)] == ["/hooks/mojaloop"]


def test_a_delay_answers_late(sim: httpx.Client) -> None:
    sim.put("/_sim/faults", json={"delayS": 0.5}).raise_for_status()
    started = time.monotonic()

    assert post(sim).status_code == 200
    assert time.monotonic() - started >= 0.5


def test_a_caller_that_times_out_during_a_delay_is_recorded_as_gone(sim: httpx.Client) -> None:
    sim.put("/_sim/faults", json={"delayS": 30}).raise_for_status()

    with pytest.raises(httpx.ReadTimeout):
        post(sim, timeout=0.3)

    wait_for(lambda: events(sim)[0]["outcome"] == "client_gone")


async def test_a_held_request_stays_open_until_released(receiver: Peer, sim: httpx.Client) -> None:
    sim.put("/_sim/faults", json={"hold": True, "status": 200}).raise_for_status()
    async with httpx.AsyncClient(base_url=receiver.url, timeout=30) as client:
        held = asyncio.create_task(client.post("/hooks/mojaloop", json=EVENT))
        await asyncio.to_thread(wait_for, lambda: events(sim) and events(sim)[0]["outcome"] == "pending")
        assert sim.get("/_sim/faults").json()["held"] == 1
        assert not held.done()

        assert sim.post("/_sim/release").json() == {"released": 1}
        answer = await asyncio.wait_for(held, 10)

    assert answer.status_code == 200
    assert events(sim)[0]["outcome"] == "answered"
    assert sim.get("/_sim/faults").json()["held"] == 0


async def test_a_held_request_whose_caller_goes_away_is_recorded_as_gone(receiver: Peer, sim: httpx.Client) -> None:
    sim.put("/_sim/faults", json={"hold": True}).raise_for_status()
    async with httpx.AsyncClient(base_url=receiver.url, timeout=30) as client:
        held = asyncio.create_task(client.post("/hooks/mojaloop", json=EVENT))
        await asyncio.to_thread(wait_for, lambda: events(sim) and events(sim)[0]["outcome"] == "pending")
        held.cancel()  # the connection closes, as when the worker holding it is killed

    await asyncio.to_thread(wait_for, lambda: events(sim)[0]["outcome"] == "client_gone")
    assert sim.get("/_sim/faults").json()["held"] == 0


def test_a_held_request_does_not_keep_the_server_from_stopping(tmp_path: Path) -> None:
    peer = webhook_receiver(tmp_path)
    outcome: list[object] = []

    def call(sim: httpx.Client) -> None:
        try:
            outcome.append(post(sim).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    with peer.process.start(), httpx.Client(base_url=peer.url, timeout=30) as sim:
        sim.put("/_sim/faults", json={"hold": True}).raise_for_status()
        caller = threading.Thread(target=call, args=(sim,))
        caller.start()
        wait_for(lambda: sim.get("/_sim/faults").json()["held"] == 1)
        started = time.monotonic()
        peer.process.stop()
        caller.join(10)

    assert time.monotonic() - started < 5  # uvicorn's graceful shutdown (2 s) ends the held request
    assert not caller.is_alive() and outcome and outcome[0] != 200


def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    peer = webhook_receiver(tmp_path)
    with peer.process.start(), httpx.Client(base_url=peer.url, timeout=10) as sim:
        post(sim)
    with peer.process.start(), httpx.Client(base_url=peer.url, timeout=10) as sim:
        assert [e["eventId"] for e in events(sim)] == ["AbC123xyz"]


def test_api_key_headers_are_checked(sim: httpx.Client) -> None:
    auth = {"type": "api_keys", "headers": {"X-Api-Key": RECEIVER_API_KEY, "X-Tenant": "bank1"}}
    assert sim.put("/_sim/auth", json=auth).json() == {"type": "api_keys"}

    right = post(sim, headers={"x-api-key": RECEIVER_API_KEY, "X-TENANT": "bank1"})
    missing = post(sim, headers={"x-api-key": RECEIVER_API_KEY})
    wrong = post(sim, headers={"x-api-key": RECEIVER_API_KEY + "x", "x-tenant": "bank1"})

    assert [right.status_code, missing.status_code, wrong.status_code] == [200, 401, 401]
    assert [e["authOk"] for e in events(sim)] == [True, False, False]
    assert sim.get("/_sim/auth").json() == {"type": "api_keys"}  # never the keys


def test_basic_credentials_are_checked(sim: httpx.Client) -> None:
    sim.put("/_sim/auth", json={"type": "basic", "username": "bank1", "password": RECEIVER_PASSWORD})

    right = post(sim, auth=("bank1", RECEIVER_PASSWORD))
    wrong = post(sim, auth=("bank1", "nope"))
    garbled = post(sim, headers={"authorization": "Basic %%%"})
    none = post(sim)

    assert right.status_code == 200
    assert [wrong.status_code, garbled.status_code, none.status_code] == [401, 401, 401]
    assert wrong.headers["www-authenticate"].startswith("Basic")


def test_bearer_tokens_are_checked_at_the_token_server(sim: httpx.Client, tmp_path: Path) -> None:
    issuer = oauth_token_server(tmp_path)
    with issuer.process.start(), httpx.Client(base_url=issuer.url, timeout=10) as idp:
        client = {"clientId": "mojaflow", "clientSecret": RECEIVER_CLIENT_SECRET, "scopes": ["webhooks", "other"]}
        idp.post("/_sim/clients", json=client).raise_for_status()
        sim.put("/_sim/auth", json={"type": "oauth2", "tokenServerUrl": issuer.url, "scope": "webhooks"})

        def token(scope: str) -> str:
            answer = idp.post(
                "/token",
                data={"grant_type": "client_credentials", "scope": scope},
                auth=("mojaflow", RECEIVER_CLIENT_SECRET),
            )
            return str(answer.json()["access_token"])

        good, narrow = token("webhooks"), token("other")
        assert post(sim, headers={"authorization": f"Bearer {good}"}).status_code == 200
        assert post(sim, headers={"authorization": f"Bearer {narrow}"}).status_code == 401  # lacks the scope
        assert post(sim, headers={"authorization": "Bearer not-a-token"}).status_code == 401

        assert idp.post("/_sim/revoke", json={}).json() == {"revoked": 2}
        refused = post(sim, headers={"authorization": f"Bearer {good}"})
        assert refused.status_code == 401 and "invalid_token" in refused.headers["www-authenticate"]
        assert post(sim, headers={"authorization": f"Bearer {token('webhooks')}"}).status_code == 200

    assert post(sim, headers={"authorization": f"Bearer {good}"}).status_code == 401  # token server gone


@pytest.mark.parametrize(
    ("route", "body", "named"),
    [
        ("/_sim/faults", {"status": 99}, "status"),
        ("/_sim/faults", {"delayS": -1}, "delayS"),
        ("/_sim/faults", {"stauts": 500}, "stauts"),
        ("/_sim/auth", {"type": "api_keys", "headers": {}}, "headers"),
        ("/_sim/auth", {"type": "kerberos"}, "type"),
        ("/_sim/auth", {"type": "oauth2", "tokenServerUrl": "not a url"}, "tokenServerUrl"),
    ],
)
def test_bad_admin_input_is_a_400_naming_the_field(
    sim: httpx.Client, route: str, body: dict[str, Any], named: str
) -> None:
    answer = sim.put(route, json=body)

    assert answer.status_code == 400
    assert named in answer.json()["message"]


def test_no_secret_in_the_receivers_log(receiver: Peer, sim: httpx.Client) -> None:
    sim.put("/_sim/auth", json={"type": "basic", "username": "bank1", "password": RECEIVER_PASSWORD})
    post(sim, auth=("bank1", RECEIVER_PASSWORD))
    basic = base64.b64encode(f"bank1:{RECEIVER_PASSWORD}".encode()).decode()

    log = receiver.process.log_path.read_text()

    assert "POST /{path:path} -> 200" in log
    assert RECEIVER_PASSWORD not in log and basic not in log
