"""The webhook delivery workflow's part of the deploy safety net (tests/workflows/test_history_corpus.py replays
every file of the corpus): its recorded paths (tests/histories/webhook_paths.py: batches, and the runs of one
transfer's deliveries recorded before batches) are there and are what their names say, and a plausible bad change
to `WebhookDeliveryWorkflow` fails to replay every one of them while the transfers' histories still replay: the
corpus guards deployed deliveries too, not only transfers.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.workflow import NondeterminismError

from worker import WORKFLOWS
from workflows.webhook_delivery import DeliveryOutcome, DeliveryRun, WebhookDeliveryWorkflow

# The sandbox re-imports this module for the changed workflow below: reading the corpus is passed through.
with workflow.unsafe.imports_passed_through():
    from mojaflow.webhook_models import delivery_workflow_id
    from tests.histories.corpus import CORPUS_DIR, corpus_name, history_files, load_history, replay, result
    from tests.histories.webhook_paths import AUTO_EVENTS, LEGACY_WEBHOOK_PATHS, WEBHOOK_PATHS

E = EventType

# Each path's outcome: the workflow's status; each delivery's (status, scheduled attempts, manual attempts, last
# status code); how many deliveries (None: some; an inbound transfer's, three or so; a batch's, as dispatched).
OUTCOMES: dict[str, tuple[str, tuple[str, int, int, int], int | None]] = {
    "webhook_batch_delivered": ("DELIVERED", ("DELIVERED", 1, 0, 200), None),
    "webhook_batch_receiver_down_retried": ("DELIVERED", ("DELIVERED", 1, 1, 200), None),
    "webhook_batch_subscription_deleted": ("CANCELLED", ("CANCELLED", 1, 0, 503), None),
    "webhook_delivered": ("DELIVERED", ("DELIVERED", 1, 0, 200), AUTO_EVENTS),
    "webhook_receiver_down_retried": ("DELIVERED", ("DELIVERED", 1, 1, 200), AUTO_EVENTS),
    "webhook_subscription_deleted": ("CANCELLED", ("CANCELLED", 1, 0, 503), AUTO_EVENTS),
    "webhook_later_event_after_idle": ("DELIVERED", ("DELIVERED", 1, 0, 200), None),
}


def _history(name: str) -> WorkflowHistory:
    return load_history(CORPUS_DIR / f"{name}.json")


def _counts(history: WorkflowHistory) -> Counter[int]:
    return Counter(event.event_type for event in history.events)


def test_the_corpus_holds_every_webhook_path() -> None:
    assert set(OUTCOMES) == {*WEBHOOK_PATHS, *LEGACY_WEBHOOK_PATHS}
    assert [name for name in OUTCOMES if not (CORPUS_DIR / f"{name}.json").exists()] == []
    for name in OUTCOMES:  # one run each: a delivery workflow never continues as new on these paths
        assert not list(CORPUS_DIR.glob(f"{name}_run*.json")), name


async def test_each_webhook_history_ends_as_its_path_says() -> None:
    for name, (status, each, count) in OUTCOMES.items():
        history = _history(name)
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.workflow_type.name == "WebhookDeliveryWorkflow", name
        outcome: dict[str, Any] = await result(history)
        deliveries = outcome["deliveries"]
        if name in LEGACY_WEBHOOK_PATHS:  # one transfer's deliveries, in the workflow of (transfer, subscription)
            assert history.workflow_id == delivery_workflow_id(outcome["transfer_id"], outcome["subscription_id"])
        else:  # a batch, named after its first delivery
            first = deliveries[0]
            assert outcome["transfer_id"] is None, name
            assert history.workflow_id == f"webhook-{first['event_id']}-{outcome['subscription_id']}-1", name
        assert outcome["status"] == status, name
        assert len(deliveries) == count if count else len(deliveries) >= 2, f"{name}: {len(deliveries)} deliveries"
        summaries = {(d["status"], d["attempts"], d["manual_attempts"], d["status_code"]) for d in deliveries}
        assert summaries == {each}, name
        assert all(d["cycle"] == 1 for d in deliveries), name


def test_each_webhook_history_went_the_way_its_path_says() -> None:
    delivered = _counts(_history("webhook_delivered"))
    assert delivered[E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED] >= 3  # the start's `deliver`, then more
    assert delivered[E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED] == 0

    retried = _counts(_history("webhook_receiver_down_retried"))
    assert retried[E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED] == AUTO_EVENTS  # one `retry_now` each
    assert retried[E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED] == AUTO_EVENTS
    assert retried[E.EVENT_TYPE_TIMER_FIRED] == 0  # retried by hand, not at the next hourly mark

    deleted = _counts(_history("webhook_subscription_deleted"))
    assert deleted[E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED] == 1

    # A batch delivered at once is one workflow task: its attempts' marker, the status indexed, the completion.
    batch = _counts(_history("webhook_batch_delivered"))
    assert batch[E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED] == 1
    assert batch[E.EVENT_TYPE_MARKER_RECORDED] == 1
    batch_retried = _counts(_history("webhook_batch_receiver_down_retried"))
    assert batch_retried[E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED] >= 2  # `retry_now`: one per delivery
    assert batch_retried[E.EVENT_TYPE_TIMER_FIRED] == 0
    batch_deleted = _counts(_history("webhook_batch_subscription_deleted"))
    assert batch_deleted[E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED] == 1

    # Idle: the quiet timer fired and the status was indexed before the transfer's later event came.
    types = [event.event_type for event in _history("webhook_later_event_after_idle").events]
    fired = types.index(E.EVENT_TYPE_TIMER_FIRED)
    indexed = types.index(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, fired)
    assert E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED in types[indexed:]


# -- the negative control ----------------------------------------------------------------------------------------


@workflow.defn(name="WebhookDeliveryWorkflow")
class LingeringWebhookDeliveryWorkflow(WebhookDeliveryWorkflow):
    """A plausible bad change: wait a moment before the first attempt, so that more of the transfer's events join
    its batch (a timer where every recorded run made its first attempt)."""

    @workflow.run
    async def run(self, run: DeliveryRun) -> DeliveryOutcome:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(run)


async def test_a_changed_delivery_workflow_fails_to_replay_the_corpus() -> None:
    files = history_files()
    workflows = [*(w for w in WORKFLOWS if w is not WebhookDeliveryWorkflow), LingeringWebhookDeliveryWorkflow]
    outcomes = await replay(files, workflows=workflows)

    failed = {name for name, failure in outcomes.items() if failure is not None}
    deliveries = {corpus_name(path) for path in files if path.name.startswith("webhook_")}
    assert deliveries >= {f"{name}.json" for name in OUTCOMES}
    assert failed == deliveries  # the transfers' histories replay as before
    for name in deliveries:  # at the first attempt: the recorded local activity has no command to match
        failure = outcomes[name]
        assert isinstance(failure, NondeterminismError), f"{name}: {failure!r}"
        expected = "[TMPRL1100] Nondeterminism error: Missing associated machine for LocalActivity(1)"
        assert expected in str(failure), f"{name}: {failure}"
