"""The CBS client (our `cbs-contract.openapi.yaml`) and the activities built on it.

Every call that changes money is idempotent at the CBS: holds by `holdKey`, credits by `reservationKey`,
commit and release by id. So Temporal may retry any of them after a crash or a timeout.
Business refusals raise `ApplicationError(type="CoreBankingRefused", non_retryable=True)` carrying the
contract's code as its only detail; the workflow maps it to a transfer error.

Only an answer the contract documents for that operation (its HTTP status and an error body whose `code` is
listed for that status, see `REFUSALS`) is a refusal. Anything else — network errors, 401/403/408/429, 5xx, an
undocumented code, a body that is not the contract's error — is `CoreBankingUnavailable` and retried: a gateway
or an auth hiccup in front of the bank must not fail a transfer that the bank never saw.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.errors import CoreBankingRefused, CoreBankingUnavailable
from mojaflow.metrics import measure_cbs_request, measure_phase

__all__ = [
    "CbsParty",
    "CoreBankingActivities",
    "CoreBankingClient",
    "CreditRequest",
    "HoldPage",
    "HoldRef",
    "HoldRequest",
    "ListedHold",
    "PartyRef",
    "REFUSALS",
    "ReservationRef",
]

_NOT_FOUND = {404: frozenset({"account_not_found"})}
_INVALID = {400: frozenset({"invalid_request"})}
_STATUS = frozenset({"account_blocked", "account_closed"})
_CREDIT_REFUSALS = _STATUS | {"unsupported_currency", "limit_exceeded"}

# Per operation: the HTTP statuses and error codes `cbs-contract.openapi.yaml` documents as refusals.
REFUSALS: dict[str, dict[int, frozenset[str]]] = {
    "get_party": {400: frozenset({"unsupported_id_type"}), 404: frozenset({"party_not_found"})},
    "get_account": _NOT_FOUND,
    "create_hold": {
        **_INVALID,
        **_NOT_FOUND,
        409: frozenset({"idempotency_conflict", "insufficient_funds", "currency_mismatch"} | _STATUS),
    },
    "commit_hold": {404: frozenset({"hold_not_found"}), 409: frozenset({"hold_released"})},
    "release_hold": {404: frozenset({"hold_not_found"}), 409: frozenset({"hold_committed"})},
    "check_credit": {**_INVALID, **_NOT_FOUND, 409: frozenset(_CREDIT_REFUSALS)},
    "reserve_credit": {**_INVALID, **_NOT_FOUND, 409: frozenset(_CREDIT_REFUSALS | {"idempotency_conflict"})},
    "commit_credit": {404: frozenset({"reservation_not_found"}), 409: frozenset({"reservation_released"})},
    "release_credit": {404: frozenset({"reservation_not_found"}), 409: frozenset({"reservation_committed"})},
    "get_hold": {404: frozenset({"hold_not_found"})},
    "list_holds": {},  # a listing refuses nothing: any error is the CBS not answering (the sweeper tries later)
}


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class PartyRef(_Wire):
    id_type: str
    id_value: str
    id_sub_value: str | None = None


class CbsParty(_Wire):
    """An account holder as the CBS answers `GET /parties/...`."""

    id_type: str
    id_value: str
    id_sub_value: str | None = None
    display_name: str | None = None
    first_name: str | None = None
    middle_name: str | None = None
    last_name: str | None = None
    date_of_birth: str | None = None
    account_id: str
    currency: str | None = None
    status: str


class HoldRequest(_Wire):
    hold_key: str
    account_id: str
    amount: str
    currency: str


class HoldRef(_Wire):
    hold_id: str


class ListedHold(_Wire):
    """An open hold as `GET /holds?status=HELD` lists it (its `accountId` is not read: the sweeper needs none)."""

    hold_id: str
    hold_key: str
    amount: str
    currency: str
    status: str
    created_at: datetime


class HoldPage(_Wire):
    holds: list[ListedHold]
    next_cursor: str | None = None


class CreditRequest(_Wire):
    reservation_key: str
    account_id: str
    amount: str
    currency: str


class ReservationRef(_Wire):
    reservation_id: str


class CoreBankingClient:
    """Plain async client of the CBS contract; used by the activities and by the backend API's lookups."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._http = client

    async def get_party(self, party: PartyRef) -> CbsParty:
        path = f"/parties/{party.id_type}/{party.id_value}"
        if party.id_sub_value:
            path += f"/{party.id_sub_value}"
        return CbsParty.model_validate(await self._call("get_party", "GET", path))

    async def get_account(self, account_id: str) -> dict[str, Any]:
        return await self._call("get_account", "GET", f"/accounts/{account_id}")

    async def create_hold(self, hold: HoldRequest) -> HoldRef:
        return HoldRef.model_validate(await self._call("create_hold", "POST", "/holds", hold))

    async def commit_hold(self, hold: HoldRef) -> None:
        await self._call("commit_hold", "POST", f"/holds/{hold.hold_id}/commit")

    async def release_hold(self, hold: HoldRef) -> None:
        await self._call("release_hold", "POST", f"/holds/{hold.hold_id}/release")

    async def hold_status(self, hold: HoldRef) -> str:
        """HELD, COMMITTED or RELEASED (`GET /holds/{holdId}`)."""
        answer = await self._call("get_hold", "GET", f"/holds/{hold.hold_id}")
        status = answer.get("status")
        if not isinstance(status, str):
            raise CoreBankingUnavailable("CBS get_hold: an answer without a status")
        return status

    async def list_open_holds(self, *, created_before: datetime, limit: int, cursor: str | None = None) -> HoldPage:
        """One page of the holds still HELD, created before `created_before`, oldest first."""
        params = {"status": "HELD", "createdBefore": created_before.isoformat(), "limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        answer = await self._call("list_holds", "GET", "/holds", params=params)
        try:
            return HoldPage.model_validate(answer)
        except ValidationError:  # its words could quote the answer: name the operation only
            raise CoreBankingUnavailable("CBS list_holds: an answer not shaped as the contract's HoldPage") from None

    async def check_credit(self, account_id: str, amount: str, currency: str) -> None:
        await self._call(
            "check_credit", "POST", "/credit-checks", {"accountId": account_id, "amount": amount, "currency": currency}
        )

    async def reserve_credit(self, credit: CreditRequest) -> ReservationRef:
        return ReservationRef.model_validate(await self._call("reserve_credit", "POST", "/credits", credit))

    async def commit_credit(self, reservation: ReservationRef) -> None:
        await self._call("commit_credit", "POST", f"/credits/{reservation.reservation_id}/commit")

    async def release_credit(self, reservation: ReservationRef) -> None:
        await self._call("release_credit", "POST", f"/credits/{reservation.reservation_id}/release")

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        body: BaseModel | dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        # Messages name the operation and the status only: paths carry party ids and account ids.
        payload = body.model_dump(by_alias=True, exclude_none=True) if isinstance(body, BaseModel) else body
        with measure_cbs_request(operation) as measured:
            try:
                response = await self._http.request(method, path, json=payload, params=params)
            except httpx.HTTPError as error:
                measured.unavailable("unreachable")
                raise CoreBankingUnavailable(f"CBS {operation}: unreachable ({type(error).__name__})") from None
            status = response.status_code
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if status >= 400:
                code = _error_code(answer)
                if code is not None and code in REFUSALS[operation].get(status, frozenset()):
                    measured.refused(code)
                    raise CoreBankingRefused(code, status)
                measured.unavailable(f"http_{status}")
                detail = f" code {code}" if code is not None and _is_snake_case(code) else ""
                raise CoreBankingUnavailable(f"CBS {operation}: HTTP {status}{detail}, not a documented refusal")
            if status < 200 or status >= 300:
                measured.unavailable(f"http_{status}")
                raise CoreBankingUnavailable(f"CBS {operation}: unexpected HTTP {status}")
        return answer if isinstance(answer, dict) else {}


def _error_code(answer: object) -> str | None:
    """The contract's error body is `{"code": str, "message": str}`; anything else has no code."""
    if not isinstance(answer, dict):
        return None
    code, message = answer.get("code"), answer.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    return code


def _is_snake_case(code: str) -> bool:
    return 0 < len(code) <= 64 and code.replace("_", "").isalpha() and code.islower()


def _refused(error: CoreBankingRefused) -> ApplicationError:
    # BENIGN: a refusal is an answer, not a fault; the worker logs it without a stack trace.
    return ApplicationError(
        error.code,
        error.code,
        type="CoreBankingRefused",
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


class CoreBankingActivities:
    """Activities against the CBS. Each is idempotent; unavailability is retried, refusals are not."""

    def __init__(self, client: CoreBankingClient) -> None:
        self._cbs = client

    @activity.defn
    async def resolve_payer(self, party: PartyRef) -> CbsParty:
        """The payer's account and name at the CBS; refused if unknown or not active."""
        try:
            payer = await self._cbs.get_party(party)
        except CoreBankingRefused as error:
            raise _refused(error) from None
        if payer.status != "active":
            raise _refused(CoreBankingRefused(f"account_{payer.status}", 409))
        return payer

    @activity.defn
    async def hold_funds(self, hold: HoldRequest) -> HoldRef:
        """Hold the payer's funds (idempotent by `holdKey`); `insufficient_funds` and others are refusals."""
        try:
            with measure_phase("hold", "outbound"):
                return await self._cbs.create_hold(hold)
        except CoreBankingRefused as error:
            raise _refused(error) from None

    @activity.defn
    async def commit_hold(self, hold: HoldRef) -> None:
        """Debit the held funds: the switch committed the transfer. Idempotent."""
        try:
            with measure_phase("settle", "outbound"):
                await self._cbs.commit_hold(hold)
        except CoreBankingRefused as error:
            raise _refused(error) from None

    @activity.defn
    async def release_hold(self, hold: HoldRef) -> None:
        """Give the held funds back: proven that no money moved. Idempotent."""
        try:
            with measure_phase("settle", "outbound"):
                await self._cbs.release_hold(hold)
        except CoreBankingRefused as error:
            raise _refused(error) from None

    # -- inbound (payee side): a credit reserved, then committed or released ---------------------

    @activity.defn
    async def reserve_credit(self, credit: CreditRequest) -> ReservationRef:
        """Reserve a credit to the payee's account (idempotent by `reservationKey` = the Mojaloop transferId):
        it shows in `pendingCredits`, not in the balance. Account status, currency and limits are refusals."""
        try:
            with measure_phase("hold", "inbound"):
                return await self._cbs.reserve_credit(credit)
        except CoreBankingRefused as error:
            raise _refused(error) from None

    @activity.defn
    async def commit_credit(self, reservation: ReservationRef) -> None:
        """Credit the reserved amount to the balance: the switch committed. Idempotent (same action twice is a
        no-op at the CBS; a released reservation is a refusal)."""
        try:
            with measure_phase("settle", "inbound"):
                await self._cbs.commit_credit(reservation)
        except CoreBankingRefused as error:
            raise _refused(error) from None

    @activity.defn
    async def release_credit(self, reservation: ReservationRef) -> None:
        """Drop the reserved credit: the switch aborted or never had the transfer. Idempotent (a committed
        reservation is a refusal, never released)."""
        try:
            with measure_phase("settle", "inbound"):
                await self._cbs.release_credit(reservation)
        except CoreBankingRefused as error:
            raise _refused(error) from None
