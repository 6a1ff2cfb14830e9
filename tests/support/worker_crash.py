"""A worker SIGKILLed while one call of an outbound transfer is held open at the SDK simulator, staged as the
crash tests stage it, and seen only as a caller and the simulators see it:

    crash = await WorkerCrash.start(stack, http, body, partyLookupDelayS=60)  # the fault armed, the transfer started
    await crash.wait_until_the_sdk_holds("partyLookups")                      # the request is in flight there
    killed_at = crash.kill_the_worker()                                       # SIGKILL; a new worker takes over
    done = await crash.wait_for_state({"ERROR_OCCURRED"})

Every wait polls a condition and is bounded; none waits for a fixed time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.stack import Stack
from tests.support.transfers import set_fault, sim_requests, sim_transfer, start_async, wait_for_state

__all__ = ["WorkerCrash"]

_ARRIVAL_S = 20  # for a request to reach the SDK simulator once the transfer is started


@dataclass
class WorkerCrash:
    stack: Stack
    http: httpx.AsyncClient
    transfer_id: str
    home_transaction_id: str

    @classmethod
    async def start(cls, stack: Stack, http: httpx.AsyncClient, body: dict[str, Any], **fault: Any) -> WorkerCrash:
        """Arm the SDK simulator's `fault` for the transfer of `body` (e.g. `partyLookupDelayS=60`: that call held
        open), then start the transfer (`Prefer: respond-async`)."""
        home = body["homeTransactionId"]
        await set_fault(http, stack.sdk_url, home, **fault)
        transfer, _ = await start_async(http, stack.api_url, body)
        return cls(stack, http, transfer["transferId"], home)

    async def wait_until_the_sdk_holds(self, request: str) -> None:
        """Until the SDK simulator has received `request` (`partyLookups` / `partyAcceptances`) for this transfer."""
        deadline = time.monotonic() + _ARRIVAL_S
        while (await self.sdk_requests())[request] < 1:
            assert time.monotonic() < deadline, f"the SDK never received the transfer's {request}"
            await asyncio.sleep(0.05)

    async def wait_until_the_sdk_holds_the_money_step(self) -> None:
        """Until the transfer is TRANSFERRING and the SDK simulator has sent its prepare to the switch."""
        in_flight = await wait_for_state(self.http, self.stack.api_url, self.transfer_id, {"TRANSFERRING"})
        deadline = time.monotonic() + _ARRIVAL_S
        while (await sim_transfer(self.http, self.stack.sdk_url, in_flight["sdkTransferId"]))["prepareCount"] < 1:
            assert time.monotonic() < deadline, "the money step never reached the switch"
            await asyncio.sleep(0.05)

    def kill_the_worker(self) -> datetime:
        """SIGKILL the stack's worker (a crash) and start a new one on the same task queue; returns the moment the
        old one was dead."""
        self.stack.worker.kill()
        killed_at = datetime.now(UTC)
        self.stack.worker = self.stack.worker_process().start()
        return killed_at

    async def wait_for_state(self, states: set[str], timeout_s: float = 60) -> dict[str, Any]:
        """Until the transfer is in one of `states` (`GET /transfers/{id}`): its view."""
        return await wait_for_state(self.http, self.stack.api_url, self.transfer_id, states, timeout_s=timeout_s)

    async def view(self) -> dict[str, Any]:
        """The transfer as `GET /transfers/{id}` shows it now."""
        response = await self.http.get(f"{self.stack.api_url}/transfers/{self.transfer_id}")
        return response.json()

    async def sdk_requests(self) -> dict[str, Any]:
        """The party lookups and acceptances the SDK simulator received for this transfer (counted on arrival)."""
        return await sim_requests(self.http, self.stack.sdk_url, self.home_transaction_id)
