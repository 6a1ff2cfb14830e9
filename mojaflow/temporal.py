"""How every process of ours reaches Temporal: one client factory, our search attributes, workflow ids."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import SearchAttributeKey

from mojaflow.codec import data_converter, load_payload_key
from mojaflow.settings import Settings

__all__ = [
    "CLIENT_KEY",
    "DIRECTION",
    "HOME_TRANSACTION_ID",
    "MOJAFLOW_STATE",
    "SDK_TRANSFER_ID",
    "SEARCH_ATTRIBUTES",
    "connect",
    "inbound_workflow_id",
    "outbound_workflow_id",
    "retrieve_start_outcome",
]

# Keyword search attributes, kept current by the workflows. None of them holds personal data.
MOJAFLOW_STATE = SearchAttributeKey.for_keyword("MojaflowState")
HOME_TRANSACTION_ID = SearchAttributeKey.for_keyword("HomeTransactionId")
SDK_TRANSFER_ID = SearchAttributeKey.for_keyword("SdkTransferId")
CLIENT_KEY = SearchAttributeKey.for_keyword("ClientKey")
DIRECTION = SearchAttributeKey.for_keyword("Direction")
SEARCH_ATTRIBUTES = (MOJAFLOW_STATE, HOME_TRANSACTION_ID, SDK_TRANSFER_ID, CLIENT_KEY, DIRECTION)


async def connect(settings: Settings) -> Client:
    """The Temporal client for worker and API alike: our encrypted pydantic data converter."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(load_payload_key(settings)),
    )


def outbound_workflow_id(client_key: str, idempotency_key: str) -> str:
    """Derived from the caller's idempotency key, so a retried request can only find the same run."""
    return f"outbound-{client_key}-{idempotency_key}"


def inbound_workflow_id(mojaloop_transfer_id: str) -> str:
    """Derived from the Mojaloop transferId, so a duplicate POST from the SDK cannot start a second run."""
    return f"inbound-{mojaloop_transfer_id}"


def retrieve_start_outcome(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """Mark the start half of an update-with-start as seen. When the start fails (the workflow already ran,
    REJECT_DUPLICATE), the SDK both raises the error and keeps it on the operation's own future; a future whose
    error is never read is logged at garbage collection as "Future exception was never retrieved". The SDK has no
    public way to ask without waiting, hence the private attribute."""
    future = start._workflow_handle
    if future.done() and not future.cancelled():
        future.exception()
