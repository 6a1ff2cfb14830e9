"""`make bench BENCH_ARGS=--e2e`: the latency of one transfer through mojaflow next to a direct call to the SDK,
both against the real SDK 18.0.2 and TTK 18.19.2 (the end-to-end stack of e2e/harness/, installed by
e2e/install.sh on first use).

    .venv/bin/python bench/bench.py --e2e [-n 20] [-c 1] [--warmup 3]

mojaflow: `POST /transfers` on our client API (auto acceptance), answered once COMPLETED: its own party lookup, quote
check, hold at the CBS simulator, money step, commit, and every state saved and published. Direct: the three calls
a bare connector makes to the SDK (`POST /transfers`, `PUT {"acceptParty": true}`, `PUT {"acceptQuote": true}`),
nothing held, nothing saved. Each transfer goes to its own payee (the SDK must never see two lookups of one payee
at once). Sequential by default (`-c 1`); the two kinds alternate in rounds. Writes bench/results/e2e-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

from e2e.harness.mojaloop import SDK_VERSION, TTK_VERSION  # noqa: E402
from e2e.harness.stack import e2e_stack  # noqa: E402
from tests.support.auth import client_api_auth  # noqa: E402
from tests.support.temporal_env import local_temporal  # noqa: E402
from tests.support.transfers import money_movement_headers, new_payer, transfer_body  # noqa: E402

One = Callable[[], Awaitable[None]]


def _payee() -> str:
    return f"2563{uuid.uuid4().int % 10**8:08d}"


def through_mojaflow(http: httpx.AsyncClient, api_url: str, payer: str) -> One:
    async def one() -> None:
        body = transfer_body(payer=payer, payee=_payee(), amount="1")
        response = await http.post(f"{api_url}/transfers", json=body, headers=money_movement_headers())
        state = response.json().get("currentState")
        if response.status_code != 201 or state != "COMPLETED":
            raise RuntimeError(f"mojaflow: HTTP {response.status_code} {state}")

    return one


def direct_to_sdk(http: httpx.AsyncClient, sdk_url: str) -> One:
    async def one() -> None:
        body = transfer_body(payee=_payee(), amount="1")
        lookup = await http.post(f"{sdk_url}/transfers", json=body)
        transfer_id = lookup.json()["transferId"]
        for step in ({"acceptParty": True}, {"acceptQuote": True}):
            answer = await http.put(f"{sdk_url}/transfers/{transfer_id}", json=step)
        if answer.json().get("currentState") != "COMPLETED":
            raise RuntimeError(f"SDK: HTTP {answer.status_code} {answer.json().get('currentState')}")

    return one


async def measure(one: One, count: int, concurrency: int, latencies: list[float]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def timed() -> None:
        async with gate:
            started = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(timed() for _ in range(count)))


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="mojaflow-bench-e2e-"))
    print(f"mojaflow e2e bench: {args.transfers} transfers each way at concurrency {args.concurrency}, warm-up "
          f"{args.warmup}; SDK {SDK_VERSION}, TTK {TTK_VERSION}; data in {data_dir}", flush=True)  # fmt: skip
    payload_key = os.urandom(32)
    latencies: dict[str, list[float]] = {"mojaflow": [], "direct SDK": []}
    async with local_temporal(payload_key) as temporal:
        with e2e_stack(temporal, payload_key, data_dir, MOJAFLOW_RATE_LIMIT_PER_MINUTE="0") as (stack, mojaloop):
            print("  stack up; measuring …", flush=True)
            async with httpx.AsyncClient(timeout=90, auth=client_api_auth) as http:
                payer, _ = await new_payer(http, stack.cbs_url, balance="1000000.00")
                kinds = {
                    "mojaflow": through_mojaflow(http, stack.api_url, payer),
                    "direct SDK": direct_to_sdk(http, mojaloop.sdk_outbound_url),
                }
                for one in kinds.values():
                    await measure(one, args.warmup, args.concurrency, [])
                rounds = 2
                for index in range(rounds):
                    order = list(kinds) if index % 2 == 0 else list(reversed(kinds))
                    for name in order:
                        count = args.transfers // rounds + (index < args.transfers % rounds)
                        await measure(kinds[name], count, args.concurrency, latencies[name])
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    figures = {name: summary(values) for name, values in latencies.items()}
    print(f"\n{'':12}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'min ms':>10}{'max ms':>10}")
    for name, row in figures.items():
        print(f"{name:12}{row['n']:>5}{row['p50_ms']:>10}{row['p95_ms']:>10}{row['min_ms']:>10}{row['max_ms']:>10}")
    overhead = figures["mojaflow"]["p50_ms"] - figures["direct SDK"]["p50_ms"]
    print(f"\nmojaflow adds {overhead:.0f} ms at the median (concurrency {args.concurrency})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"e2e-{stamp}.json"
    record: dict[str, Any] = {
        "when": stamp, "machine": platform.platform(), "cores": os.cpu_count(), "sdk": SDK_VERSION,
        "ttk": TTK_VERSION, "concurrency": args.concurrency, "figures": figures,
    }  # fmt: skip
    out.write_text(json.dumps(record, indent=2))
    print(f"written to {out}")
    return 0


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/bench.py --e2e", description=__doc__.splitlines()[0])
    parser.add_argument("--e2e", action="store_true")
    parser.add_argument("-n", "--transfers", type=int, default=20, help="measured transfers each way (20)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="transfers in flight at once (1)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured transfers each way first (3)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs of every process)")
    args = parser.parse_args(argv)
    if args.transfers < 2 or args.concurrency < 1 or args.warmup < 0:
        parser.error("need --transfers >= 2, --concurrency >= 1, --warmup >= 0")
    sys.exit(asyncio.run(run(args)))
