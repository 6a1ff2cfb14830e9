"""The committed corpus of workflow histories: where it is, the key its payloads are encrypted with, and how a
history file is read and replayed. Shared by the recorder (tests/histories/record.py) and the replay test
(tests/workflows/test_history_corpus.py).

Each `<path>.json` (and `deployed/<release>/<path>.json`, kept from a release: README, "Re-recording the
history corpus") is `WorkflowHistory.to_json()` of one run (as `temporal workflow show --output json` writes
it): payloads base64-encoded, and encrypted by our codec with `payload.key`, a key for this synthetic test data
only.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.converter import DefaultFailureConverter
from temporalio.worker import Replayer

from mojaflow.codec import data_converter
from worker import WORKFLOWS, workflow_runner

__all__ = [
    "CORPUS_DIR",
    "corpus_key",
    "corpus_name",
    "history_files",
    "load_history",
    "replay",
    "replayer",
    "result",
]

CORPUS_DIR = Path(__file__).resolve().parent
KEY_FILE = CORPUS_DIR / "payload.key"


def corpus_key() -> bytes:
    """The corpus's own payload key (base64 of 32 bytes): never a key of a real deployment."""
    return base64.b64decode(KEY_FILE.read_text().strip())


def history_files() -> list[Path]:
    """This code's recordings (`<path>.json`), and those of deployed releases kept in `deployed/<release>/`."""
    return sorted(CORPUS_DIR.rglob("*.json"))


def corpus_name(path: Path) -> str:
    """`outbound_auto_completed.json`, `deployed/<release>/outbound_auto_completed.json`."""
    return path.relative_to(CORPUS_DIR).as_posix()


def load_history(path: Path) -> WorkflowHistory:
    """The history in `path`, under the workflow id its start event names (the JSON has no other)."""
    data: dict[str, Any] = json.loads(path.read_text())
    started = data["events"][0].get("workflowExecutionStartedEventAttributes", {})
    return WorkflowHistory.from_json(started.get("workflowId") or f"corpus-{path.stem}", data)


async def result(history: WorkflowHistory) -> dict[str, Any]:
    """What a completed run returned (a transfer's view, a delivery workflow's outcome), decrypted with the corpus
    key."""
    last = history.events[-1]
    assert last.HasField("workflow_execution_completed_event_attributes"), f"{history.workflow_id} did not complete"
    codec = data_converter(corpus_key()).payload_codec
    assert codec is not None
    [payload] = await codec.decode(last.workflow_execution_completed_event_attributes.result.payloads)
    return dict(json.loads(payload.data))


def replayer(workflows: Sequence[type] = WORKFLOWS) -> Replayer:
    """A replayer as strict as the worker can be: our workflows through the sandbox, our encrypted converter.
    Failures it raises itself keep their message in clear (synthetic data): a replay failure must be readable."""
    converter = dataclasses.replace(data_converter(corpus_key()), failure_converter_class=DefaultFailureConverter)
    return Replayer(workflows=workflows, workflow_runner=workflow_runner(sandboxed=True), data_converter=converter)


async def replay(files: Sequence[Path], workflows: Sequence[type] = WORKFLOWS) -> dict[str, Exception | None]:
    """Replay each file (one replayer for all); by its name in the corpus, the replay failure or None."""
    outcomes: dict[str, Exception | None] = {}
    names = iter([corpus_name(path) for path in files])

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for path in files:
            yield load_history(path)

    async with replayer(workflows).workflow_replay_iterator(histories()) as results:
        async for result in results:
            outcomes[next(names)] = result.replay_failure
    return outcomes
