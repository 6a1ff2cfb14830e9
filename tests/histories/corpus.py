"""The committed corpus of workflow histories: where it is, the key its payloads are encrypted with, and how a
history file is read and replayed. Shared by the recorder (tests/histories/record.py) and the replay test
(tests/workflows/test_history_corpus.py).

Each `<path>.json` is `WorkflowHistory.to_json()` of one run (as `temporal workflow show --output json` writes
it): payloads base64-encoded, and encrypted by our codec with `payload.key`, a key for this synthetic test data
only.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from mojaflow.codec import data_converter
from worker import WORKFLOWS, workflow_runner

__all__ = ["CORPUS_DIR", "corpus_key", "history_files", "load_history", "replay", "replayer"]

CORPUS_DIR = Path(__file__).resolve().parent
KEY_FILE = CORPUS_DIR / "payload.key"


def corpus_key() -> bytes:
    """The corpus's own payload key (base64 of 32 bytes): never a key of a real deployment."""
    return base64.b64decode(KEY_FILE.read_text().strip())


def history_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.json"))


def load_history(path: Path) -> WorkflowHistory:
    """The history in `path`, under the workflow id its start event names (the JSON has no other)."""
    data: dict[str, Any] = json.loads(path.read_text())
    started = data["events"][0].get("workflowExecutionStartedEventAttributes", {})
    return WorkflowHistory.from_json(started.get("workflowId") or f"corpus-{path.stem}", data)


def replayer(workflows: Sequence[type] = WORKFLOWS) -> Replayer:
    """A replayer as strict as the worker can be: our workflows through the sandbox, our encrypted converter."""
    return Replayer(
        workflows=workflows,
        workflow_runner=workflow_runner(sandboxed=True),
        data_converter=data_converter(corpus_key()),
    )


async def replay(files: Sequence[Path], workflows: Sequence[type] = WORKFLOWS) -> dict[str, Exception | None]:
    """Replay each file (one replayer for all); by file name, the replay failure or None."""
    outcomes: dict[str, Exception | None] = {}
    names = iter([path.name for path in files])

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for path in files:
            yield load_history(path)

    async with replayer(workflows).workflow_replay_iterator(histories()) as results:
        async for result in results:
            outcomes[next(names)] = result.replay_failure
    return outcomes
