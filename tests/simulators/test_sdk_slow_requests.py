"""The SDK simulator's slow party lookup and quote (`partyLookupDelayS`, `acceptPartyDelayS`): each request is
counted as it arrives, held open for the delay, and carried on after the caller has gone away, as the SDK does."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.simulators._sims import Sim
from tests.simulators.test_sdk_simulator import transfer_body

DELAY_S = 1.0


async def _requests(client: httpx.AsyncClient, home: str) -> dict[str, Any]:
    response = await client.get(f"/_sim/requests/{home}")
    assert response.status_code == 200
    return response.json()


async def _arrived(client: httpx.AsyncClient, home: str, name: str, count: int, within_s: float = DELAY_S / 2) -> None:
    """Polls the arrival counter (by default bounded well below the delay: the request is surely still in flight)."""
    deadline = time.monotonic() + within_s
    while (await _requests(client, home))[name] < count:
        assert time.monotonic() < deadline, f"{name} never reached {count}"
        await asyncio.sleep(0.02)


async def _fault(client: httpx.AsyncClient, home: str, **fault: Any) -> None:
    assert (await client.put(f"/_sim/faults/{home}", json=fault)).status_code == 200


async def test_a_payer_without_requests_counts_none(sdk_sim: Sim) -> None:
    async with httpx.AsyncClient(base_url=sdk_sim.url, timeout=10) as client:
        home = f"home-{uuid.uuid4()}"
        assert await _requests(client, home) == {"homeTransactionId": home, "partyLookups": 0, "partyAcceptances": 0}


async def test_a_slow_party_lookup_is_counted_on_arrival_and_answers_after_the_delay(sdk_sim: Sim) -> None:
    body = transfer_body()
    home = body["homeTransactionId"]
    async with httpx.AsyncClient(base_url=sdk_sim.url, timeout=10) as client:
        await _fault(client, home, partyLookupDelayS=DELAY_S)
        started = time.monotonic()
        post = asyncio.create_task(client.post("/transfers", json=body))

        await _arrived(client, home, "partyLookups", 1)
        assert not post.done()
        answer = await post

        assert time.monotonic() - started >= DELAY_S
        assert answer.status_code == 200 and answer.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
        assert await _requests(client, home) == {"homeTransactionId": home, "partyLookups": 1, "partyAcceptances": 0}


async def test_a_slow_party_acceptance_goes_on_after_the_caller_has_gone(sdk_sim: Sim) -> None:
    body = transfer_body()
    home = body["homeTransactionId"]
    async with httpx.AsyncClient(base_url=sdk_sim.url, timeout=10) as client:
        await _fault(client, home, acceptPartyDelayS=DELAY_S)
        posted = await client.post("/transfers", json=body)  # no delay for the lookup itself
        transfer_id = posted.json()["transferId"]
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):  # the caller gives up while the SDK still waits for the quote
            await client.put(f"/transfers/{transfer_id}", json={"acceptParty": True}, timeout=DELAY_S / 4)
        await _arrived(client, home, "partyAcceptances", 1, within_s=10)

        deadline = time.monotonic() + 10
        while (await client.get(f"/_sim/transfers/{transfer_id}")).json()["currentState"] != (
            "WAITING_FOR_QUOTE_ACCEPTANCE"
        ):
            assert time.monotonic() < deadline, "the quote never came"
            await asyncio.sleep(0.05)

        assert time.monotonic() - started >= DELAY_S
        assert await _requests(client, home) == {"homeTransactionId": home, "partyLookups": 1, "partyAcceptances": 1}
        assert (await client.get(f"/_sim/transfers/{transfer_id}")).json()["prepareCount"] == 0


@pytest.mark.parametrize("delay", [-1, 3601])
async def test_delays_out_of_range_are_refused(sdk_sim: Sim, delay: float) -> None:
    async with httpx.AsyncClient(base_url=sdk_sim.url, timeout=10) as client:
        for name in ("partyLookupDelayS", "acceptPartyDelayS"):
            response = await client.put(f"/_sim/faults/home-{uuid.uuid4()}", json={name: delay})
            assert response.status_code == 400, response.text
