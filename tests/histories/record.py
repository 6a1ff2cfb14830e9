"""Record the history corpus: `make record-histories`, or `.venv/bin/python -m tests.histories.record [path ...]`
for some paths only (`--list` names them).

Starts the real stack as the tests do (a Temporal dev server, the simulators, our API and worker, in a temporary
directory; the corpus's own payload key) and a webhook receiver it may post to (MOJAFLOW_WEBHOOK_ALLOWED_HOSTS),
drives each path of tests/histories/paths.py in turn and, once all have ended as they should, writes the history of
each run to tests/histories/<path>.json (later runs of a workflow that continued as new to <path>_run<N>.json),
never touching tests/histories/deployed/. Then it replays what it wrote, as tests/workflows/test_history_corpus.py
will.

Re-record only while nothing is deployed; after a deploy, see README, "Re-recording the history corpus".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowHistory

from tests.histories.corpus import CORPUS_DIR, corpus_key, replay
from tests.histories.paths import PATHS, Driver
from tests.support.auth import client_api_auth
from tests.support.stack import running_stack
from tests.support.temporal_env import local_temporal
from tests.support.webhook_peers import webhook_receiver

__all__ = ["main", "record"]

# The webhook paths subscribe the receiver simulator, on 127.0.0.1: the SSRF guard lets it through.
WEBHOOK_SETTINGS = {"MOJAFLOW_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}


async def record(names: list[str]) -> dict[str, list[WorkflowHistory]]:
    """Drive each named path on a fresh stack: by path, the histories of its runs, first to last. Raises (and
    nothing is written) if a path does not end as it should or any workflow ended Failed."""
    key = corpus_key()
    recorded: dict[str, list[WorkflowHistory]] = {}
    with tempfile.TemporaryDirectory(prefix="mojaflow-histories-") as data_dir:
        receiver = webhook_receiver(Path(data_dir) / "webhook-receiver")
        async with local_temporal(key) as temporal:
            with receiver.process.start(), running_stack(temporal, key, Path(data_dir), WEBHOOK_SETTINGS) as stack:
                async with httpx.AsyncClient(timeout=70, auth=client_api_auth) as http:  # as the `http` fixture
                    driver = Driver(stack, http, receiver.url)
                    for name in names:
                        started = time.monotonic()
                        try:
                            workflow_id = await PATHS[name](driver)
                        except BaseException:
                            for process in (stack.worker, stack.api, receiver.process):
                                print(f"--- {process.name} log:\n{process.log_tail()}", file=sys.stderr)
                            raise
                        recorded[name] = await _runs(stack.client, workflow_id)
                        print(f"{name}: {len(recorded[name])} run(s) in {time.monotonic() - started:.1f} s", flush=True)
    return recorded


async def _runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of the workflow, first to last, found by walking back from the last along continue-as-new."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            return histories[::-1]


def _write(name: str, histories: list[WorkflowHistory]) -> list[Path]:
    for stale in [CORPUS_DIR / f"{name}.json", *CORPUS_DIR.glob(f"{name}_run*.json")]:
        stale.unlink(missing_ok=True)
    files = []
    for number, history in enumerate(histories, start=1):
        path = CORPUS_DIR / (f"{name}.json" if number == 1 else f"{name}_run{number}.json")
        path.write_text(history.to_json() + "\n")
        files.append(path)
    return files


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.histories.record", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", help="only these paths (default: all)")
    parser.add_argument("--list", action="store_true", help="list the paths and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(PATHS))
        return 0
    unknown = [name for name in args.paths if name not in PATHS]
    if unknown:
        parser.error(f"unknown paths {unknown}; --list names them")
    names = args.paths or list(PATHS)
    written = [path for name, runs in (await record(names)).items() for path in _write(name, runs)]
    if not args.paths:  # deployed/ is never touched: those histories are what running workflows replay
        for other in sorted(set(CORPUS_DIR.glob("*.json")) - set(written)):
            print(f"left as is: {other.name} (no path records it; delete it if its path is gone)")
    failures = {name: failure for name, failure in (await replay(written)).items() if failure is not None}
    for name, failure in failures.items():
        print(f"does not replay: {name}: {failure!r}", file=sys.stderr)
    print(f"{len(written)} histories written to {CORPUS_DIR}, {len(failures)} do not replay")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
