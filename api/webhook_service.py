"""What the client API does with webhook subscriptions and deliveries: scoping, the SSRF guard at subscription
time, cancelling a subscription's open deliveries, manual retries and recoveries. Owns the Temporal client and the
database; the routes (`api.webhooks`) stay a few lines each.

Scoping is that of `/transfers`: a subscription and its deliveries belong to the caller's `client_key`; another
client's are 404, as unknown ones (no existence oracle); an operator reads and manages all. Each change is in the
audit log with its actor (ids only, never a URL or a secret).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from datetime import datetime, timedelta
from typing import Literal

from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Caller
from api.problems import Problem
from mojaflow.audit import record_action_or_log
from mojaflow.database import Database
from mojaflow.settings import Settings
from mojaflow.url_guard import UnsafeUrl, check_url
from mojaflow.webhook_delivery_queries import (
    DeliveryDetail,
    DeliveryView,
    StoredDelivery,
    get_delivery,
    list_deliveries,
    restart_failed_since,
    restartable,
    start_new_cycle,
)
from mojaflow.webhook_dispatch import DELIVERY_WORKFLOW, batches, dispatch_batch, mark_dispatched
from mojaflow.webhook_models import NOT_IN_THIS_RUN, DeliveryBatch, DeliveryItem, DeliveryStatus
from mojaflow.webhook_subscription_models import (
    OAuth2ClientCredentialsAuth,
    SigningSecretRotated,
    SubscriptionAuth,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionUpdate,
    SubscriptionView,
)
from mojaflow.webhook_subscriptions import (
    OpenDelivery,
    StoredSubscription,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    rotate_signing_secret,
    update_subscription,
)

__all__ = ["DELIVERY_WORKFLOW", "RETRY_NOW", "WebhookService"]

log = logging.getLogger("mojaflow.api")

RETRY_NOW = "retry_now"  # its update: one attempt now, recorded manual, not counted toward the 73
_PARALLEL = 20  # Temporal calls in flight at once when a subscription's deliveries are cancelled or recovered
_START_TIMEOUT_S = 5.0  # per workflow start; one that did not start is left to the sweeper
_DIRECT_STARTS = 200  # a recovery dispatches this many deliveries itself (in batches); the sweeper the rest
_TOKEN_URL_FIELD = "auth.oauth2_client_credentials.tokenUrl"  # as pydantic names it in a validation error


def _subscription_not_found(subscription_id: str) -> Problem:
    return Problem(
        404, "subscription_not_found", "Subscription not found", f"no subscription with id {subscription_id}"
    )


def _delivery_not_found(delivery_id: str) -> Problem:
    return Problem(404, "delivery_not_found", "Delivery not found", f"no delivery with id {delivery_id}")


def _temporal_unavailable() -> Problem:
    return Problem(503, "temporal_unavailable", "Temporal unavailable", "the workflow service did not answer; retry")


class WebhookService:
    def __init__(self, client: Client, database: Database, settings: Settings) -> None:
        self._client = client
        self._db = database
        self._settings = settings

    # -- subscriptions -------------------------------------------------------------------------------------------

    async def create(self, caller: Caller, body: SubscriptionCreate) -> SubscriptionCreated:
        if caller.client_key is None:  # MOJAFLOW_AUTH=none without a client_key header: nobody to own it
            message = "header client_key names the subscription's owner (MOJAFLOW_AUTH=none)"
            errors = [{"field": "client_key", "message": message}]
            raise Problem(400, "invalid_header", "Invalid Money Movement headers", message, errors=errors)
        await self._guard(body.url, body.auth)
        created = await create_subscription(self._db, caller.client_key, body)
        await self._audit(caller, "webhook_subscription_create", created.subscription_id, caller.client_key)
        return created

    async def get(self, caller: Caller, subscription_id: str) -> SubscriptionView:
        return (await self._own(caller, subscription_id)).view

    async def subscriptions(
        self, caller: Caller, *, limit: int, after: tuple[datetime, str] | None
    ) -> list[tuple[SubscriptionView, datetime]]:
        return await list_subscriptions(self._db, client_key=caller.read_scope, limit=limit, after=after)

    async def update(self, caller: Caller, subscription_id: str, patch: SubscriptionUpdate) -> SubscriptionView:
        stored = await self._own(caller, subscription_id)
        await self._guard(patch.url, patch.auth)
        updated = await update_subscription(self._db, subscription_id, patch)
        if updated is None:  # deleted meanwhile
            raise _subscription_not_found(subscription_id)
        view, cancelled = updated
        await self._cancel_workflows(cancelled)
        fields = ",".join(sorted(patch.model_fields_set))
        await self._audit(caller, "webhook_subscription_update", subscription_id, stored.client_key, fields)
        return view

    async def delete(self, caller: Caller, subscription_id: str) -> None:
        stored = await self._own(caller, subscription_id)
        cancelled = await delete_subscription(self._db, subscription_id)
        if cancelled is None:
            raise _subscription_not_found(subscription_id)
        await self._cancel_workflows(cancelled)
        await self._audit(caller, "webhook_subscription_delete", subscription_id, stored.client_key)

    async def rotate_secret(self, caller: Caller, subscription_id: str) -> SigningSecretRotated:
        stored = await self._own(caller, subscription_id)
        rotated = await rotate_signing_secret(self._db, subscription_id)
        if rotated is None:
            raise _subscription_not_found(subscription_id)
        await self._audit(caller, "webhook_secret_rotate", subscription_id, stored.client_key)
        return rotated

    async def recover(self, caller: Caller, subscription_id: str, since: datetime) -> list[str]:
        """Every FAILED delivery of the subscription created since `since` sent again in a new cycle; their ids.
        The rows move first, in one transaction; the first `_DIRECT_STARTS` are dispatched here, the rest by the
        sweeper within seconds (a recovery of thousands answers at once)."""
        stored = await self._own(caller, subscription_id)
        self._require_enabled(stored)
        restarted = await restart_failed_since(self._db, subscription_id, since)
        await self._start_cycles(restarted[:_DIRECT_STARTS])
        detail = f"{len(restarted)} restarted since {since.isoformat()}"
        await self._audit(caller, "webhook_recover", subscription_id, stored.client_key, detail)
        return [view.delivery_id for view in restarted]

    # -- deliveries ----------------------------------------------------------------------------------------------

    async def deliveries(
        self,
        caller: Caller,
        *,
        subscription_id: str | None,
        event_id: str | None,
        transfer_id: str | None,
        status: DeliveryStatus | None,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[tuple[DeliveryView, datetime]]:
        return await list_deliveries(
            self._db, client_key=caller.read_scope, subscription_id=subscription_id, event_id=event_id,
            transfer_id=transfer_id, status=status, limit=limit, after=after,
        )  # fmt: skip

    async def delivery(self, caller: Caller, delivery_id: str) -> DeliveryDetail:
        stored = await self._own_delivery(caller, delivery_id, detail=True)
        assert isinstance(stored.view, DeliveryDetail)
        return stored.view

    async def retry(self, caller: Caller, delivery_id: str) -> DeliveryView:
        """A running delivery attempts at once (`retry_now`); a finished one starts a new cycle of 73 attempts with
        the same event id. Answers the delivery as it now stands."""
        stored = await self._own_delivery(caller, delivery_id)
        subscription = await get_subscription(self._db, stored.view.subscription_id)
        if subscription is None:
            raise Problem(
                409, "subscription_inactive", "Subscription inactive",
                f"subscription {stored.view.subscription_id} is deleted: its deliveries are not sent again",
            )  # fmt: skip
        self._require_enabled(subscription)
        view = stored.view
        orphaned = False
        if view.status == DeliveryStatus.DELIVERING:
            outcome = await self._retry_now(view)
            if outcome == "accepted":
                await self._audit(caller, "webhook_retry_now", view.subscription_id, stored.client_key, delivery_id)
                return view
            orphaned = outcome == "gone"
        current = (await self._own_delivery(caller, delivery_id)).view  # its workflow may have finished meanwhile
        # DELIVERING with no running workflow of its cycle: the workflow is gone (terminated by hand, say)
        orphaned = orphaned and current.status == DeliveryStatus.DELIVERING and current.cycle == view.cycle
        if not (restartable(current.status) or orphaned):
            reason = (
                "its first attempt is about to be made" if current.status == DeliveryStatus.PENDING
                else "its workflow is making its last attempt: retry once it is FAILED"
            )  # fmt: skip
            raise Problem(
                409, "delivery_not_retryable", "Delivery not retryable",
                f"delivery {delivery_id} is {current.status}: {reason}",
            )  # fmt: skip
        if await start_new_cycle(self._db, delivery_id, current.cycle, orphaned=orphaned):
            await self._start_cycles([current.model_copy(update={"cycle": current.cycle + 1})])
        await self._audit(caller, "webhook_retry", view.subscription_id, stored.client_key, delivery_id)
        return (await self._own_delivery(caller, delivery_id)).view

    # -- helpers -------------------------------------------------------------------------------------------------

    async def _own(self, caller: Caller, subscription_id: str) -> StoredSubscription:
        stored = await get_subscription(self._db, subscription_id)
        if stored is None or not caller.may_read(stored.client_key):
            raise _subscription_not_found(subscription_id)
        return stored

    async def _own_delivery(self, caller: Caller, delivery_id: str, *, detail: bool = False) -> StoredDelivery:
        stored = await get_delivery(self._db, delivery_id, detail=detail)
        if stored is None or not caller.may_read(stored.client_key):
            raise _delivery_not_found(delivery_id)
        return stored

    @staticmethod
    def _require_enabled(subscription: StoredSubscription) -> None:
        if not subscription.view.enabled:
            raise Problem(
                409, "subscription_inactive", "Subscription inactive",
                f"subscription {subscription.view.subscription_id} is disabled: enable it first",
            )  # fmt: skip

    async def _guard(self, url: str | None, auth: SubscriptionAuth | None) -> None:
        """The SSRF guard, before anything is stored: the URL and the OAuth2 token URL."""
        checks = [("url", url)]
        if isinstance(auth, OAuth2ClientCredentialsAuth):
            checks.append((_TOKEN_URL_FIELD, auth.token_url))
        errors = []
        for field, value in checks:
            if value is None:
                continue
            try:
                await check_url(value, self._settings.webhook_allowed_hosts)
            except UnsafeUrl as refused:
                errors.append({"field": field, "message": str(refused)})
        if errors:
            detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
            raise Problem(422, "unsafe_url", "URL refused", detail, errors=errors)

    async def _retry_now(self, view: DeliveryView) -> Literal["accepted", "refused", "gone"]:
        """Ask the delivery's workflow for an attempt now: `accepted`; `refused` by its validator (that delivery is
        finishing); `gone` if no run holds it (the run finished meanwhile, or was terminated)."""
        if view.workflow_id is None:  # never dispatched, yet DELIVERING: its workflow cannot be found
            return "gone"
        handle = self._client.get_workflow_handle(view.workflow_id)
        try:
            update = await handle.start_update(
                RETRY_NOW,
                view.delivery_id,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=timedelta(seconds=10),
            )
            if update._known_outcome is not None:  # a refusal comes with the start's answer: no wait
                await update.result()
        except WorkflowUpdateFailedError as refused:
            cause = refused.cause
            return "gone" if isinstance(cause, ApplicationError) and cause.type == NOT_IN_THIS_RUN else "refused"
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return "gone"
            raise _temporal_unavailable() from None
        return "accepted"

    async def _start_cycles(self, views: list[DeliveryView]) -> None:
        """Hand the deliveries' (new) cycles to workflows, in batches, their rows already set to them (PENDING,
        undispatched), and mark the rows dispatched. A batch Temporal does not take stays undispatched: the sweeper
        dispatches it."""
        items = (
            (view.subscription_id, DeliveryItem(delivery_id=view.delivery_id, event_id=view.event_id,
                                                transfer_id=view.transfer_id, cycle=view.cycle, final=True))
            for view in views
        )  # fmt: skip
        await _gathered(self._start_cycle(batch) for batch in batches(items))

    async def _start_cycle(self, batch: DeliveryBatch) -> bool:
        try:
            await dispatch_batch(
                self._client, batch, task_queue=self._settings.webhook_task_queue, timeout_s=_START_TIMEOUT_S
            )
        except RPCError as error:
            log.warning("%d deliveries left to the sweeper: %s", len(batch.deliveries), error.status.name)
            return False
        await mark_dispatched(self._db, [batch])
        return True

    async def _cancel_workflows(self, deliveries: list[OpenDelivery]) -> None:
        """Best effort: the rows are CANCELLED already, and an attempt of a disabled or deleted subscription is
        never made (the activity reads the subscription first). A workflow holds one subscription's deliveries."""

        async def cancel(workflow_id: str) -> bool:
            try:
                await self._client.get_workflow_handle(workflow_id).cancel()
            except RPCError as error:
                return error.status == RPCStatusCode.NOT_FOUND  # never started, or finished: nothing to cancel
            return True

        workflow_ids = {each.workflow_id for each in deliveries if each.workflow_id is not None}
        failed = (await _gathered(cancel(workflow_id) for workflow_id in sorted(workflow_ids))).count(False)
        if failed:
            log.warning("%d delivery workflows not cancelled (Temporal did not answer); they stop on their own", failed)

    async def _audit(
        self, caller: Caller, action: str, subscription_id: str, client_key: str | None, more: str | None = None
    ) -> None:
        detail = f"subscription {subscription_id}" + (f": {more}" if more else "")
        await record_action_or_log(self._db, actor=caller.actor, action=action, client_key=client_key, detail=detail)


async def _gathered(calls: Iterable[Awaitable[bool]]) -> list[bool]:
    """Run the calls, at most `_PARALLEL` at once; their results in order."""
    gate = asyncio.Semaphore(_PARALLEL)

    async def gated(call: Awaitable[bool]) -> bool:
        async with gate:
            return await call

    return list(await asyncio.gather(*(gated(call) for call in calls)))
