"""CoreBankingClient over httpx.MockTransport: only the contract's documented refusals are refusals."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from activities.core_banking import (
    REFUSALS,
    CoreBankingClient,
    CreditRequest,
    HoldRef,
    HoldRequest,
    PartyRef,
    ReservationRef,
)
from activities.errors import CoreBankingRefused, CoreBankingUnavailable

PARTY = PartyRef(id_type="MSISDN", id_value="25644444444")
HOLD = HoldRequest(hold_key="k1", account_id="acc-0001", amount="10.00", currency="USD")
CREDIT = CreditRequest(reservation_key="r1", account_id="acc-0002", amount="10.00", currency="USD")

Call = Callable[[CoreBankingClient], Awaitable[Any]]
OPERATIONS: dict[str, Call] = {
    "get_party": lambda c: c.get_party(PARTY),
    "get_account": lambda c: c.get_account("acc-0001"),
    "create_hold": lambda c: c.create_hold(HOLD),
    "commit_hold": lambda c: c.commit_hold(HoldRef(hold_id="h1")),
    "release_hold": lambda c: c.release_hold(HoldRef(hold_id="h1")),
    "check_credit": lambda c: c.check_credit("acc-0002", "10.00", "USD"),
    "reserve_credit": lambda c: c.reserve_credit(CREDIT),
    "commit_credit": lambda c: c.commit_credit(ReservationRef(reservation_id="c1")),
    "release_credit": lambda c: c.release_credit(ReservationRef(reservation_id="c1")),
    "get_hold": lambda c: c.hold_status(HoldRef(hold_id="h1")),
    "list_holds": lambda c: c.list_open_holds(created_before=datetime.now(UTC), limit=10),
}


def client_answering(status: int, body: Any = None, raw: bytes | None = None) -> CoreBankingClient:
    def handler(_: httpx.Request) -> httpx.Response:
        if raw is not None:
            return httpx.Response(status, content=raw)
        return httpx.Response(status, json=body)

    return CoreBankingClient(httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://cbs"))


def error(code: str) -> dict[str, str]:
    return {"code": code, "message": "refused"}


DOCUMENTED = [  # sorted: the same order in every process (pytest-xdist compares the collections)
    (op, status, code) for op, table in REFUSALS.items() for status, codes in table.items() for code in sorted(codes)
]


def test_every_operation_has_a_refusal_table() -> None:
    assert set(REFUSALS) == set(OPERATIONS)


@pytest.mark.parametrize(("operation", "status", "code"), DOCUMENTED)
async def test_documented_codes_are_refusals(operation: str, status: int, code: str) -> None:
    with pytest.raises(CoreBankingRefused) as raised:
        await OPERATIONS[operation](client_answering(status, error(code)))
    assert raised.value.code == code
    assert raised.value.status == status


@pytest.mark.parametrize("status", [401, 403, 408, 429, 500, 502, 503, 504])
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_transient_statuses_are_unavailable(operation: str, status: int) -> None:
    # Even with a body carrying a documented code: these statuses are not refusals in the contract.
    with pytest.raises(CoreBankingUnavailable):
        await OPERATIONS[operation](client_answering(status, error("insufficient_funds")))


@pytest.mark.parametrize(
    ("operation", "status", "body"),
    [
        ("create_hold", 409, error("something_new")),  # undocumented code
        ("create_hold", 409, error("limit_exceeded")),  # a credit code, not a hold's
        ("create_hold", 404, error("party_not_found")),  # documented elsewhere, not for holds
        ("commit_hold", 409, error("hold_committed")),  # the release's refusal, not the commit's
        ("get_party", 409, error("party_not_found")),  # right code, wrong status
        ("reserve_credit", 422, error("limit_exceeded")),  # undocumented status
        ("get_party", 404, {"detail": "Not Found"}),  # a router's 404, not the contract's error
        ("get_party", 404, {"code": "party_not_found"}),  # no message: not the contract's error body
        ("create_hold", 409, ["insufficient_funds"]),  # not an object
    ],
)
async def test_undocumented_answers_are_unavailable(operation: str, status: int, body: Any) -> None:
    with pytest.raises(CoreBankingUnavailable):
        await OPERATIONS[operation](client_answering(status, body))


async def test_a_non_json_4xx_is_unavailable() -> None:
    with pytest.raises(CoreBankingUnavailable):
        await OPERATIONS["create_hold"](client_answering(409, raw=b"<html>conflict</html>"))


async def test_network_errors_are_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = CoreBankingClient(httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://cbs"))
    with pytest.raises(CoreBankingUnavailable):
        await client.get_party(PARTY)


async def test_messages_carry_no_party_ids() -> None:
    for status in (401, 404, 503):
        with pytest.raises(CoreBankingUnavailable) as raised:
            await client_answering(status, {"detail": "/parties/MSISDN/25644444444"}).get_party(PARTY)
        assert "25644444444" not in str(raised.value)
        assert "/parties" not in str(raised.value)


async def test_success_returns_the_body() -> None:
    client = client_answering(201, {"holdId": "h9", "status": "HELD"})
    assert (await client.create_hold(HOLD)).hold_id == "h9"
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"accountId": "acc-0002", "allowed": True})

    checker = CoreBankingClient(httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://cbs"))
    await checker.check_credit("acc-0002", "10.00", "USD")
    assert sent == [{"accountId": "acc-0002", "amount": "10.00", "currency": "USD"}]
