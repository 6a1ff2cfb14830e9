"""Identifier registration through the SDK's outbound API: `POST /accounts`, which registers each party id with the
scheme's Account Lookup Service (ALS) under this DFSP, and answers once the ALS did (or did not).

The SDK's answers come back as they are (status and body), for the Send Money API to carry to its caller: 200 with
a `response` entry per id (an `error` on an id the ALS refused), 500 with the ALS's FSPIOP error in `statusCode`,
504 when the ALS did not answer in the SDK's time. Registering an id again is harmless at the ALS, so a request
that provably never reached the SDK (connection refused, 429/502/503) is retried; one that may have is not.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from mojaflow.metrics import measure_sdk_request

__all__ = ["AccountActivities", "AccountEntry", "AccountsAnswer", "AccountsRegistration"]

log = logging.getLogger(__name__)


class AccountEntry(BaseModel):
    """One identifier to register, as the SDK's `accountsRequest` item."""

    model_config = ConfigDict(populate_by_name=True)

    id_type: str = Field(alias="idType")
    id_value: str = Field(alias="idValue")
    id_sub_value: str | None = Field(default=None, alias="idSubValue")
    currency: str | None = None


class AccountsRegistration(BaseModel):
    accounts: list[AccountEntry]


class AccountsAnswer(BaseModel):
    """The SDK's answer as it came; `body` None when there was none to read (or no answer at all: `status` 504
    when the request may have reached the SDK, 503 when it never did)."""

    status: int
    body: dict[str, Any] | None = None


class AccountActivities:
    """Activities against the SDK outbound API's `/accounts`. The `httpx.AsyncClient` is built in `worker.py`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._http = client

    @activity.defn
    async def register_accounts(self, registration: AccountsRegistration) -> AccountsAnswer:
        """`POST /accounts`. Raises `SdkUnavailable` (retried) when the request never reached the SDK."""
        body = [entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in registration.accounts]
        try:
            response = await measure_sdk_request("register_accounts", lambda: self._http.post("/accounts", json=body))
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise ApplicationError(f"SDK unreachable: {type(error).__name__}", type="SdkUnavailable") from None
        except httpx.HTTPError as error:  # it may have been registered: the caller decides whether to ask again
            log.warning("POST /accounts: no answer (%s)", type(error).__name__)
            return AccountsAnswer(status=504)
        if response.status_code in (429, 502, 503):
            raise ApplicationError(f"SDK unavailable: HTTP {response.status_code}", type="SdkUnavailable")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return AccountsAnswer(status=response.status_code, body=answer if isinstance(answer, dict) else None)
