"""A CBS that is down when a transfer starts: nothing is held yet, so the transfer gives up after its two
minutes of retries (CBS_LOOKUP) and ends ERROR_OCCURRED `cbs_unavailable`, instead of retrying for ever.

The lookup is a local activity; the SDK does not end its retries at its schedule_to_close_timeout, so they are
bounded by their number (workflows/transfer_state.py, `bounded_locally`): 7 attempts start within 2 minutes
(after 1, 2, 4, ... 32 s of back-off), the last after ~63 s of real time here. Without that bound the workflow
task heartbeats for ever (a few history events every 8 s) until Temporal terminates the workflow at its
history limit.
"""

from __future__ import annotations

import httpx

from tests.conftest import Stack
from tests.support.transfers import new_payer, start_async, transfer_body, wait_for_state

FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}
LOOKUP_ATTEMPTS = 7  # 1 + 2 + 4 + 8 + 16 + 32 s of back-off start within 2 minutes; the next would be at 127 s


async def _calls(http: httpx.AsyncClient, stack: Stack) -> dict[str, int]:
    response = await http.get(f"{stack.cbs_url}/_sim/calls")
    response.raise_for_status()
    return dict(response.json())


async def test_a_cbs_down_at_the_payer_lookup_ends_the_transfer_cbs_unavailable(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payer, _ = await new_payer(http, stack.cbs_url)
    before = await _calls(http, stack)
    (await http.put(f"{stack.cbs_url}/_sim/faults/resolve_party", json={"mode": "down"})).raise_for_status()
    try:
        transfer, _ = await start_async(http, stack.api_url, transfer_body(payer=payer, amount="10"))
        done = await wait_for_state(http, stack.api_url, transfer["transferId"], FINAL, timeout_s=150)
    finally:
        (await http.delete(f"{stack.cbs_url}/_sim/faults/resolve_party")).raise_for_status()

    assert (done["currentState"], done["lastError"]["code"]) == ("ERROR_OCCURRED", "cbs_unavailable"), done
    calls = await _calls(http, stack)
    assert calls["resolve_party"] - before["resolve_party"] == LOOKUP_ATTEMPTS
    assert calls["hold"] == before["hold"]  # nothing was held
