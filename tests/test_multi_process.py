"""The scale-out topology on one machine, without Docker (issue 13, "Scale-out on Temporal's own cluster"):
PostgreSQL for our database (Debian's package, started here), one Temporal server (make run's dev server stands in
for the cluster), two API processes and three workers. 500 transfers at concurrency 20, spread over both APIs,
while one worker is SIGKILLed and one API process crashes and is started again: every transfer ends final, the
SDK simulator saw one prepare for each completed transfer and none for any other, the CBS simulator's ledger
debited each payer exactly what the switch committed, and the webhook receiver got every state change once.

make run's launcher (`--workers 3`, README "Several processes") runs the dev server, the simulators, the workers
and the first API, and starts the killed worker again as a production supervisor would; the second API is a
process of the test's own, on ports of its own, against the same database, Temporal server and keys. A caller
whose API went away sends the same request (same idempotency key) to the other one, as a bank's CBS would.

Heavy (a few minutes on 2 cores): `pytest -m "not heavy"` leaves it out; `make test` runs it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from mojaflow.webhook_models import EVENT_TYPE
from tests.support.auth import register_client_api
from tests.support.launcher import announced_pids, launch, launcher_env, wait_healthy
from tests.support.process import ServerProcess, free_port
from tests.support.stack import ROOT
from tests.support.temporal_env import assert_no_workflow_failed
from tests.support.transfers import FINAL, account, money_movement_headers, new_payer, transfer_body

pytestmark = pytest.mark.heavy

TRANSFERS = 500
CONCURRENCY = 20  # transfers in flight at once: one lane per payer, each sends its next once the last is final
KILL_WORKER_AT = 100  # transfers final when worker-2 is SIGKILLed
CRASH_API_AT = 250  # ... and when the second API is
OPENING_BALANCE = Decimal("100000.00")
TRANSFER_DEADLINE_S = 300.0


@dataclass
class Sent:
    payer_account: str
    amount: Decimal
    home_transaction_id: str
    transfer_id: str
    state: str


class Driver:
    """The load: `CONCURRENCY` lanes sending `TRANSFERS` transfers over both APIs, falling over to the other API
    when one does not answer, and telling `milestone(n)` waiters when n transfers are final."""

    def __init__(self, http: httpx.AsyncClient, apis: list[str], payers: list[tuple[str, str]]) -> None:
        self.http, self.apis, self.payers = http, apis, payers
        self.sent: list[Sent] = []
        self._milestones: dict[int, asyncio.Event] = {}

    def milestone(self, final: int) -> asyncio.Event:
        """Set once `final` transfers are final (already set if they are)."""
        reached = self._milestones.setdefault(final, asyncio.Event())
        if len(self.sent) >= final:
            reached.set()
        return reached

    async def run(self) -> None:
        await asyncio.gather(*(self._lane(lane) for lane in range(CONCURRENCY)))

    async def _lane(self, lane: int) -> None:
        msisdn, account_id = self.payers[lane]
        for number in range(lane, TRANSFERS, CONCURRENCY):
            amount = Decimal(1 + number % 50)
            # A payee of its own, as a bank's traffic has many: lookups of one payee queue (activities/payee_locks.py)
            body = transfer_body(payer=msisdn, payee=f"25633{lane:06d}", amount=str(amount))
            headers = {**money_movement_headers(f"mp{number}"), "Prefer": "wait=20"}
            created = await self._call(number, "POST", "/transfers", json=body, headers=headers)
            assert created.status_code in (200, 201, 202), created.text  # 200: a replay, after an API went away
            transfer_id = created.json()["transferId"]
            state = await self._final_state(number, transfer_id)
            self.sent.append(Sent(account_id, amount, body["homeTransactionId"], transfer_id, state))
            for count, reached in self._milestones.items():
                if len(self.sent) >= count:
                    reached.set()

    async def _call(self, number: int, method: str, path: str, **options: Any) -> httpx.Response:
        """The request to this transfer's API, or to the other while that one does not answer."""
        deadline = time.monotonic() + TRANSFER_DEADLINE_S
        for attempt in itertools.count():
            api = self.apis[(number + attempt) % len(self.apis)]
            try:
                return await self.http.request(method, f"{api}{path}", **options)
            except httpx.TransportError:  # refused, or reset by a crash mid-request: the same request elsewhere
                assert time.monotonic() < deadline, f"no API answered {method} {path}"
                await asyncio.sleep(0.05)
        raise AssertionError("unreachable")  # itertools.count() never ends

    async def _final_state(self, number: int, transfer_id: str) -> str:
        deadline = time.monotonic() + TRANSFER_DEADLINE_S
        while True:
            response = await self._call(number, "GET", f"/transfers/{transfer_id}")
            assert response.status_code == 200, response.text
            if (state := response.json()["currentState"]) in FINAL:
                return str(state)
            assert time.monotonic() < deadline, f"transfer {transfer_id} still {state}"
            await asyncio.sleep(0.2)


async def _until(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"{what}, not within {timeout_s} s"
        await asyncio.sleep(0.2)


async def _disturb(driver: Driver, log: Path, api2: ServerProcess) -> None:
    """SIGKILL worker-2 (the launcher's, by the PID it announced) mid-load, then crash and restart the second API."""
    await driver.milestone(KILL_WORKER_AT).wait()
    killed = announced_pids(log)["worker-2"]
    os.kill(killed, signal.SIGKILL)

    async def restarted() -> bool:
        return announced_pids(log)["worker-2"] != killed

    await _until(restarted, "the launcher did not start worker-2 again")
    await driver.milestone(CRASH_API_AT).wait()
    await asyncio.to_thread(api2.kill)
    await asyncio.to_thread(api2.start)


async def _received_events(http: httpx.AsyncClient, receiver: str, finals: dict[str, str]) -> list[dict[str, Any]]:
    """Every webhook the receiver got, once each transfer's final state has arrived there."""
    events: list[dict[str, Any]] = []

    async def all_final_events_in() -> bool:
        while True:
            after = events[-1]["seq"] if events else 0
            page = await http.get(f"{receiver}/_sim/events", params={"after": after, "limit": 5000})
            events.extend(page.json()["events"])
            if len(page.json()["events"]) < 5000:
                break
        arrived = {(e["transferId"], e["body"]["data"]["currentState"]) for e in events}
        return all((transfer_id, state) in arrived for transfer_id, state in finals.items())

    await _until(all_final_events_in, "the final state's event of some transfers never reached the receiver", 180)
    return events


async def test_500_transfers_over_two_apis_and_three_workers_survive_a_killed_worker_and_api(
    postgres: str, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = {
        **launcher_env(tmp_path),
        "MOJAFLOW_DATABASE_URL": postgres,
        "MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",  # the receiver simulator, for both APIs and every worker
        # A money step cut off by the kill is asked about soon, and released soon after the prepare's expiry if it
        # never left (the SDK simulator's switch answers at once: no late prepare to wait for)
        "MOJAFLOW_RECONCILE_MAX_INTERVAL_S": "2",
        "MOJAFLOW_RECONCILE_GRACE_S": "5",
    }
    api1 = f"http://127.0.0.1:{env['MOJAFLOW_CLIENT_API_PORT']}"
    receiver = f"http://127.0.0.1:{env['MOJAFLOW_WEBHOOK_RECEIVER_PORT']}"
    client_port = free_port()
    api2 = ServerProcess(
        "api-2",
        [sys.executable, "-m", "api"],
        health_url=f"http://127.0.0.1:{client_port}/openapi.json",
        env={**env, "MOJAFLOW_CLIENT_API_PORT": str(client_port), "MOJAFLOW_BACKEND_API_PORT": str(free_port())},
        cwd=str(ROOT),
        log_path=tmp_path / "api-2.log",
    )
    log = tmp_path / "launcher.log"
    launcher = launch(env, log, "--workers", "3")
    try:
        wait_healthy(api1, launcher, log)
        api2.start()
        apis = [api1, f"http://127.0.0.1:{client_port}"]
        for api in apis:
            register_client_api(api, env)  # keys of the shared PostgreSQL database
        subscribed = await http.post(
            f"{api1}/webhooks/subscriptions", headers=money_movement_headers(),
            json={"url": f"{receiver}/hooks", "eventTypes": [EVENT_TYPE], "auth": {"type": "api_keys",
                  "headers": {"X-Receiver-Key": "multi-process"}}},
        )  # fmt: skip
        assert subscribed.status_code == 201, subscribed.text
        payers = [await new_payer(http, env["MOJAFLOW_CBS_URL"], str(OPENING_BALANCE)) for _ in range(CONCURRENCY)]

        driver = Driver(http, apis, payers)
        await asyncio.gather(driver.run(), _disturb(driver, log, api2))

        # Every transfer final; what moved is counted where it moved: prepares at the SDK (one per request whose
        # transfer completed, none elsewhere), money at the CBS (each payer debited what the switch committed).
        assert len(driver.sent) == TRANSFERS
        states = Counter(sent.state for sent in driver.sent)
        sdk = (await http.get(f"{env['MOJAFLOW_SDK_URL']}/_sim/transfers")).json()["transfers"]
        prepares: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
        for record in sdk:
            prepares[record["homeTransactionId"]].append((record["prepareCount"], record["switchState"]))
        for sent in driver.sent:
            made = [(count, switch) for count, switch in prepares[sent.home_transaction_id] if count]
            expected = [(1, "COMMITTED")] if sent.state == "COMPLETED" else []
            assert made == expected, f"{sent.transfer_id} {sent.state}: prepares {made} ({states})"
        debits: dict[str, Decimal] = defaultdict(Decimal)
        for sent in driver.sent:
            debits[sent.payer_account] += sent.amount if sent.state == "COMPLETED" else 0
        for _, account_id in payers:
            ledger = await account(http, env["MOJAFLOW_CBS_URL"], account_id)
            assert (Decimal(ledger["balance"]), ledger["held"]) == (OPENING_BALANCE - debits[account_id], "0.00")
        assert states["COMPLETED"] >= TRANSFERS - CONCURRENCY, states  # only transfers cut off by a crash may not

        # Every state change reached the subscriber as one event: one event id per (transfer, sequence), 1, 2, ...
        # in a row. A POST cut off by the kill after the receiver took it is posted again with the same id (at least
        # once, deduplicated by id: the contract), so repeats of an id are allowed, other ids are not.
        finals = {sent.transfer_id: sent.state for sent in driver.sent}
        events = await _received_events(http, receiver, finals)
        ids_per_change: dict[tuple[str, int], set[str]] = defaultdict(set)
        for event in events:
            ids_per_change[(event["transferId"], event["body"]["data"]["sequence"])].add(event["body"]["id"])
        assert {change: ids for change, ids in ids_per_change.items() if len(ids) > 1} == {}
        per_change = Counter((e["transferId"], e["body"]["data"]["sequence"]) for e in events)
        assert sum(per_change.values()) - len(per_change) <= CONCURRENCY, "more re-posts than attempts in flight"
        sequences: dict[str, list[int]] = defaultdict(list)
        for transfer_id, sequence in sorted(per_change):
            sequences[transfer_id].append(sequence)
        assert set(sequences) == set(finals)
        gaps = {t: s for t, s in sequences.items() if s != list(range(1, len(s) + 1))}
        assert gaps == {}

        assert launcher.poll() is None and api2.running  # everything still up
        await assert_no_workflow_failed(await Client.connect(env["MOJAFLOW_TEMPORAL_ADDRESS"]))
    finally:
        api2.stop()
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(timeout=30)
