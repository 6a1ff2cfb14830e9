"""`AccountRegistrationWorkflow`: the Send Money API's `POST /accounts`, one SDK call run as an activity, so that it
is retried while the SDK cannot be reached, seen in the Web UI, and its party ids are in history only encrypted.

No money moves and registering an id twice is harmless, so it has no idempotency key of its own: each request is a
run of its own. It always completes, with the SDK's answer or the reason there is none.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sdk_accounts import AccountActivities, AccountsAnswer, AccountsRegistration

__all__ = ["ACCOUNTS_CALL", "AccountRegistrationWorkflow"]

# The SDK answers once the ALS did, within its REQUEST_PROCESSING_TIMEOUT_SECONDS (30 s by default).
ACCOUNTS_CALL = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=75),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
)


@workflow.defn
class AccountRegistrationWorkflow:
    @workflow.run
    async def run(self, registration: AccountsRegistration) -> AccountsAnswer:
        try:
            return await workflow.execute_activity_method(
                AccountActivities.register_accounts, registration, **ACCOUNTS_CALL
            )
        except ActivityError as error:
            never_sent = isinstance(error.cause, ApplicationError) and error.cause.type == "SdkUnavailable"
            return AccountsAnswer(status=503 if never_sent else 504)  # unreachable; or no answer in time
