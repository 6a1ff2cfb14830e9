"""Identifier registration for the Send Money API's `POST /accounts`: one `AccountRegistrationWorkflow` per request,
whose activity calls the SDK's outbound `POST /accounts`; the SDK's answer comes back as it was."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.sdk_accounts import AccountEntry, AccountsAnswer, AccountsRegistration
from api.errors import TemporalUnavailable
from mojaflow.settings import Settings
from workflows.account_registration import AccountRegistrationWorkflow

__all__ = ["AccountRegistrar"]

# The run makes up to 3 attempts; the SDK answers each within its own timeout (30 s by default).
_WAIT_S = 100.0


class AccountRegistrar:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def register(self, accounts: list[AccountEntry]) -> AccountsAnswer:
        """The SDK's answer (`status` 503: it could not be reached; 504: no answer in time, from it or from the run).
        Raises `TemporalUnavailable`."""
        try:
            return await asyncio.wait_for(
                self._client.execute_workflow(
                    AccountRegistrationWorkflow.run,
                    AccountsRegistration(accounts=accounts),
                    # no key to derive it from: registering an id twice is harmless, so each request runs once
                    id=f"accounts-{uuid.uuid4()}",
                    task_queue=self._settings.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                ),
                timeout=_WAIT_S,
            )
        except TimeoutError:
            return AccountsAnswer(status=504)
        except RPCError:
            raise TemporalUnavailable() from None
