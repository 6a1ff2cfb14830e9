"""The SDK classifiers against REAL SDK 18.0.2 answers (tests/fixtures/sdk/*.json, copied from
../shared/reference/mojaloop-stack/captures/; each fixture names its source capture). Never simulator answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.payment_manager import (
    PaymentManagerActivities,
    SdkTransferRef,
    classify_transfer_answer,
)
from mojaflow.ilp import fulfilment_matches
from mojaflow.models import TransferOrder, TransferRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sdk"
REF = SdkTransferRef(sdk_transfer_id="0048d491-89be-48dd-960c-8bd4d68a68be")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def answer(name: str) -> httpx.Response:
    captured = fixture(name)
    if captured["body"] is None:
        return httpx.Response(captured["status"])
    return httpx.Response(captured["status"], json=captured["body"])


def activities(handler: Callable[[httpx.Request], httpx.Response]) -> PaymentManagerActivities:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://sdk.test")
    return PaymentManagerActivities(client, retry_backoff_s=0.0)


def answering(name: str, calls: list[httpx.Request] | None = None) -> PaymentManagerActivities:
    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(request)
        return answer(name)

    return activities(handler)


def raising(error: Exception, calls: list[httpx.Request]) -> PaymentManagerActivities:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise error

    return activities(handler)


def transfer_request() -> TransferOrder:
    return TransferRequest.model_validate(fixture("post_manual")["request_body"]).order()


async def run(method: Any, arg: Any) -> Any:
    return await ActivityEnvironment().run(method, arg)


# --- the money step: PUT {"acceptQuote": true} ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["accept_quote_committed", "post_auto_completed"])
async def test_committed_carries_a_fulfilment_that_matches_the_condition(name: str) -> None:
    calls: list[httpx.Request] = []
    result = await run(answering(name, calls).send_quote_acceptance, REF)
    body = fixture(name)["body"]
    assert result.outcome == "COMMITTED"
    assert result.fulfilment == body["fulfil"]["body"]["fulfilment"]
    assert result.condition == body["quoteResponse"]["body"]["condition"]
    assert fulfilment_matches(result.fulfilment, result.condition)
    assert result.sdk_transfer_id == body["transferId"]
    assert result.expiration is not None
    assert len(calls) == 1 and json.loads(calls[0].content) == {"acceptQuote": True}


async def test_error_callback_5105_is_rejected_with_condition_and_id() -> None:
    result = await run(answering("accept_quote_5105").send_quote_acceptance, REF)
    state = fixture("accept_quote_5105")["body"]["transferState"]
    assert result.outcome == "REJECTED"
    assert result.failure is not None and result.failure.fspiop_error_code == "5105"
    assert result.failure.http_status == 500
    assert result.condition == state["quoteResponse"]["body"]["condition"]
    assert result.sdk_transfer_id == state["transferId"]
    assert result.expiration is not None and result.fulfilment is None


async def test_504_is_unknown_and_keeps_the_sdk_transfer_id() -> None:
    result = await run(answering("accept_quote_504").send_quote_acceptance, SdkTransferRef(sdk_transfer_id="x"))
    state = fixture("accept_quote_504")["body"]["transferState"]
    assert result.outcome == "UNKNOWN"
    assert result.sdk_transfer_id == state["transferId"]
    assert result.condition == state["quoteResponse"]["body"]["condition"]
    assert result.expiration is not None  # bounds the reconciliation
    assert result.failure is not None and result.failure.http_status == 504


async def test_reput_204_is_unknown() -> None:
    result = await run(answering("reput_after_error_204").send_quote_acceptance, REF)
    assert result.outcome == "UNKNOWN"
    assert result.sdk_transfer_id == REF.sdk_transfer_id


async def test_no_cached_data_found_is_unknown() -> None:
    result = await run(answering("put_unknown_id").send_quote_acceptance, REF)
    assert result.outcome == "UNKNOWN"
    assert result.failure is not None and result.failure.http_status == 500
    assert result.condition is None


def test_sdk_aborted_is_rejected_for_the_workflow_to_confirm() -> None:
    captured = fixture("quote_decline_aborted")
    result = classify_transfer_answer(captured["status"], captured["body"])
    assert result.outcome == "REJECTED"
    assert result.condition == captured["body"]["quoteResponse"]["body"]["condition"]


async def test_money_step_read_timeout_is_unknown_and_not_resent() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.ReadTimeout("slow"), calls).send_quote_acceptance, REF)
    assert result.outcome == "UNKNOWN" and len(calls) == 1


async def test_money_step_remote_protocol_error_is_not_resent() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.RemoteProtocolError("closed"), calls).send_quote_acceptance, REF)
    assert result.outcome == "UNKNOWN" and len(calls) == 1


async def test_money_step_connect_refused_is_retried_then_unknown_not_sent() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.ConnectError("refused"), calls).send_quote_acceptance, REF)
    assert len(calls) == 3
    assert result.outcome == "UNKNOWN"
    assert result.failure is not None and result.failure.http_status == 503


async def test_money_step_connect_refused_then_answer() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return answer("accept_quote_committed")

    result = await run(activities(handler).send_quote_acceptance, REF)
    assert result.outcome == "COMMITTED" and len(calls) == 2


# --- party acceptance: PUT {"acceptParty": true} ---------------------------------------------------------------


async def test_accept_party_manual_gives_quote_with_condition_and_no_went_past() -> None:
    calls: list[httpx.Request] = []
    result = await run(answering("accept_party_manual", calls).send_party_acceptance, REF)
    body = fixture("accept_party_manual")["body"]
    assert result.answered and result.failure is None and result.went_past is None
    assert result.sdk_state == "WAITING_FOR_QUOTE_ACCEPTANCE"
    assert result.quote is not None
    assert result.quote.condition == body["quoteResponse"]["body"]["condition"]
    assert json.loads(calls[0].content) == {"acceptParty": True}


async def test_accept_party_answered_completed_went_past_committed() -> None:
    # AUTO_ACCEPT_QUOTES=true: the acceptParty answer is the full transfer, as the auto-mode capture shows.
    result = await run(answering("accept_quote_committed").send_party_acceptance, REF)
    assert result.went_past is not None and result.went_past.outcome == "COMMITTED"
    assert fulfilment_matches(result.went_past.fulfilment, result.went_past.condition)


async def test_accept_party_read_timeout_is_not_answered() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.ReadTimeout("slow"), calls).send_party_acceptance, REF)
    assert result.answered is False and result.failure is None and len(calls) == 1


async def test_accept_party_connect_refused_is_retried_then_not_sent() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.ConnectError("refused"), calls).send_party_acceptance, REF)
    assert len(calls) == 3
    assert result.answered is True
    assert result.failure is not None and result.failure.http_status == 503


# --- party lookup: POST /transfers -----------------------------------------------------------------------------


async def test_post_manual_waits_for_party_acceptance() -> None:
    result = await run(answering("post_manual").request_party, transfer_request())
    assert result.answered and result.went_past is None and result.failure is None
    assert result.sdk_state == "WAITING_FOR_PARTY_ACCEPTANCE"
    assert result.sdk_transfer_id == fixture("post_manual")["body"]["transferId"]


async def test_post_completed_went_past_committed() -> None:
    result = await run(answering("post_auto_completed").request_party, transfer_request())
    body = fixture("post_auto_completed")["body"]
    assert result.went_past is not None and result.went_past.outcome == "COMMITTED"
    assert result.went_past.sdk_transfer_id == body["transferId"] == result.sdk_transfer_id
    assert fulfilment_matches(result.went_past.fulfilment, result.went_past.condition)


async def test_post_auto_error_callback_went_past_rejected() -> None:
    result = await run(answering("post_auto_rejected_5105").request_party, transfer_request())
    state = fixture("post_auto_rejected_5105")["body"]["transferState"]
    assert result.failure is not None
    assert result.went_past is not None and result.went_past.outcome == "REJECTED"
    assert result.went_past.failure is not None and result.went_past.failure.fspiop_error_code == "5105"
    assert result.sdk_transfer_id == state["transferId"]


async def test_post_read_timeout_is_not_answered_and_not_resent() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.ReadTimeout("slow"), calls).request_party, transfer_request())
    assert result.answered is False and len(calls) == 1


async def test_post_connect_refused_is_retried_then_not_sent() -> None:
    calls: list[httpx.Request] = []
    result = await run(raising(httpx.ConnectError("refused"), calls).request_party, transfer_request())
    assert len(calls) == 3
    assert result.answered is True and result.failure is not None and result.failure.http_status == 503


async def test_post_503_is_retried() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503) if len(calls) == 1 else answer("post_manual")

    result = await run(activities(handler).request_party, transfer_request())
    assert len(calls) == 2 and result.sdk_state == "WAITING_FOR_PARTY_ACCEPTANCE"


# --- reconciliation: GET /transfers/{id} -----------------------------------------------------------------------


async def test_get_3208_is_not_found() -> None:
    result = await run(answering("get_3208").get_switch_state, REF)
    assert result.state == "NOT_FOUND" and result.fulfilment is None


@pytest.mark.parametrize("name", ["get_committed", "get_after_504", "get_after_rejected"])
async def test_get_committed_carries_the_fulfilment(name: str) -> None:
    result = await run(answering(name).get_switch_state, REF)
    assert result.state == "COMMITTED"
    assert result.fulfilment == fixture(name)["body"]["fulfil"]["body"]["fulfilment"]


async def test_get_after_504_fulfilment_matches_the_504_condition() -> None:
    money = await run(answering("accept_quote_504").send_quote_acceptance, REF)
    switch = await run(answering("get_after_504").get_switch_state, REF)
    assert fulfilment_matches(switch.fulfilment, money.condition)


async def test_get_committed_without_fulfilment_says_so() -> None:
    result = await run(answering("get_unknown_no_fulfilment").get_switch_state, REF)
    assert result.state == "COMMITTED" and result.fulfilment is None


async def test_get_transport_error_is_unknown() -> None:
    result = await run(raising(httpx.ReadTimeout("slow"), []).get_switch_state, REF)
    assert result.state == "UNKNOWN"
