"""`make bench [BENCH_ARGS="--scenario NAME[,NAME…] …"]`: what a transfer through mojaflow costs, each part of the
measurement a scenario on its own isolated stack (free ports of 127.0.0.1, a temporary data dir, every process
stopped by PID at the end and on Ctrl-C). Without `--scenario`: `baseline,latency` (about 2 minutes on 2 cores).

    baseline  mojaflow vs the bare workflow with our worker settings (the ratio) and the sandboxed bare (compare.py)
    latency   at concurrency 1: direct SDK calls (the floor), the fair bare, mojaflow; one transfer by phase
    storage   the dev server's SQLite pragmas: its default, wal+synchronous=full, wal+synchronous=normal
    curve     concurrency 1, 5, 20, 50, 100 (--levels): throughput, p50/p99, CPU per transfer per process
    waiting   --waiting N transfers parked in WAITING_FOR_QUOTE_ACCEPTANCE: RSS, new transfers/s meanwhile
    growth    --grow N transfers into both databases: POST p50, GET /transfers p95 before/after, bytes per transfer
    worker-options  the transfers' worker's slots, cache and pollers, one set per fresh stack (--option-set)
    webhooks  what webhooks cost (webhook_load.py; --parked N)
    e2e       against the real SDK and TTK (e2e_latency.py)

Each scenario prints its figures with the machine's load average and writes them as JSON into
bench/results/<scenario>-<UTC>.json (not committed). `--webhooks` and `--e2e` still work as before.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from bench.phase import loadavg  # noqa: E402

# scenario -> module with `async def run(args) -> dict` (the figures; "failed" true makes the exit status 1)
SCENARIOS = {
    "baseline": "bench.compare",
    "latency": "bench.latency",
    "storage": "bench.storage",
    "curve": "bench.curve",
    "waiting": "bench.waiting",
    "growth": "bench.growth",
    "worker-options": "bench.worker_options",
}
DEFAULT = "baseline,latency"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/bench.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--scenario", default=DEFAULT, help=f"comma-separated, of: {', '.join(SCENARIOS)}, webhooks, "
                        f"e2e (default {DEFAULT})")  # fmt: skip
    parser.add_argument("-n", "--transfers", type=int, default=200, help="measured transfers per phase (200)")
    parser.add_argument("-c", "--concurrency", type=int, default=20, help="transfers in flight at once (20)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured transfers before each phase (20)")
    parser.add_argument("--rounds", type=int, default=2, help="baseline: rounds of alternating order (2)")
    parser.add_argument("--bare-activities", action="store_true",
                        help="baseline: the bare's calls before the money step as activities, not local")  # fmt: skip
    parser.add_argument("--sequential", type=int, default=30,
                        help="latency: transfers of each kind one at a time (30)")  # fmt: skip
    parser.add_argument("--pragma-set", action="append", metavar="LABEL=P1,P2",
                        help="storage: one more setting, e.g. big=journal_mode=wal,cache_size=-64000")  # fmt: skip
    parser.add_argument("--option-set", action="append", metavar="LABEL=K1=V1;K2=V2",
                        help="worker-options: replaces the built-in sets, e.g. 'slots 50=WORKER_MAX_CONCURRENT_WORKFLOW"
                        "_TASKS=50;WORKER_MAX_CONCURRENT_LOCAL_ACTIVITIES=50' (repeatable; quote the ;)")  # fmt: skip
    parser.add_argument("--levels", default="1,5,20,50,100", help="curve: concurrency levels (1,5,20,50,100)")
    parser.add_argument("--waiting", type=int, default=1000, help="waiting: transfers parked (1000; issue: 5000)")
    parser.add_argument("--grow", type=int, default=2000, help="growth: transfers added (2000; issue: 100000)")
    parser.add_argument("--profile", action="store_true",
                        help="our worker, API and the bare workers under cProfile; keeps the .prof files")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the data dirs (logs, both databases)")
    parser.add_argument("--webhooks", action="store_true", help="same as --scenario webhooks")
    parser.add_argument("--parked", type=int, default=0, metavar="N", help="webhooks: also N deliveries parked")
    parser.add_argument("--e2e", action="store_true", help="same as --scenario e2e (its own options)")
    args = parser.parse_args(argv)
    if args.webhooks:
        args.scenario = "webhooks"
    unknown = [name for name in args.scenario.split(",") if name not in (*SCENARIOS, "webhooks", "e2e")]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}, webhooks, e2e")
    if "webhooks" in args.scenario.split(",") and args.scenario != "webhooks":
        parser.error("the webhooks scenario runs alone")
    if "worker-options" in args.scenario.split(","):
        from bench.worker_options import option_sets

        try:
            option_sets(args.option_set)
        except ValueError as error:
            parser.error(str(error))
    if args.transfers < 1 or args.concurrency < 1 or args.warmup < 0 or not 1 <= args.rounds <= args.transfers:
        parser.error("need --transfers >= 1, --concurrency >= 1, --warmup >= 0, 1 <= --rounds <= --transfers")
    return args


async def run_scenarios(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    failed = False
    for name in args.scenario.split(","):
        before = loadavg()
        print(f"== scenario {name} (load average {before}) ==", flush=True)
        result = await importlib.import_module(SCENARIOS[name]).run(args)
        write_result(name, args, before, result)
        failed = failed or bool(result.get("failed"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--e2e" in argv or "e2e" in argv:  # against the real SDK and TTK: its own options
        from bench import e2e_latency

        e2e_latency.main([arg for arg in argv if arg not in ("--scenario", "e2e")] + ["--e2e"] * ("--e2e" not in argv))
    args = parse(argv)
    if args.scenario == "webhooks":
        from bench import webhook_load

        sys.exit(webhook_load.run(args))
    try:
        code = asyncio.run(run_scenarios(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: stopped everything", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
