"""The Send Money API's error dialect: `{statusCode, message}` (the spec's `errorResponse`), whatever refused the
request on its routes: its own checks (`SendMoneyFailure`), a body that fails the schema (400 3100) or is not JSON
(400 3101), who calls (401/403, 3000), the rate limit (429, 3000), the service's refusals. The client API's other
routes keep their problems; only the size limits, refused before any route runs, stay problems on every route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import HomeTransactionMismatch, IdempotencyKeyReused, TemporalUnavailable, TransferNotFound
from api.problems import Problem
from api.send_money_models import SendMoneyError
from mojaflow.codes import fspiop_code
from mojaflow.models import TransferView

__all__ = ["SendMoneyFailure", "SendMoneyRoute", "as_failures", "documented", "ended"]

log = logging.getLogger("mojaflow.api")

# A problem's status → the FSPIOP code it carries here: 3000 generic client error, 3100 validation error,
# 3208 transfer not found, 2003 service unavailable.
_FSPIOP = {400: "3100", 401: "3000", 403: "3000", 404: "3208", 409: "3100", 422: "3100", 429: "3000", 503: "2003"}
_NOT_PARSED = "There was an error parsing the body"  # FastAPI's 400 when it cannot decode the body at all


class SendMoneyFailure(Exception):
    """Raise to answer `{statusCode, message}` (and our `transferId` when there is a transfer)."""

    def __init__(
        self, status: int, status_code: str, message: str, *, transfer_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.status_code = status_code
        self.message = message
        self.transfer_id = transfer_id
        self.headers = headers


def _answer(failure: SendMoneyFailure) -> JSONResponse:
    body = SendMoneyError(status_code=failure.status_code, message=failure.message, transfer_id=failure.transfer_id)
    content = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(content, status_code=failure.status, headers=failure.headers)


def _field(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location if part != "body") or "body"


def _invalid(error: RequestValidationError) -> SendMoneyFailure:
    errors = error.errors()
    if any(item.get("type") == "json_invalid" for item in errors):
        return SendMoneyFailure(400, "3101", "malformed_json: the request body is not valid JSON")
    detail = "; ".join(f"{_field(tuple(item.get('loc', ())))}: {item.get('msg', '')}" for item in errors)
    return SendMoneyFailure(400, "3100", detail)


def _from_problem(problem: Problem) -> SendMoneyFailure:
    status = 400 if problem.code == "invalid_header" else problem.status
    code = "3101" if problem.code == "malformed_json" else _FSPIOP.get(status, "2001")
    return SendMoneyFailure(status, code, f"{problem.code}: {problem.detail}", headers=problem.headers)


class SendMoneyRoute(APIRoute):
    """Every refusal on these routes, in this dialect, before the app's problem handlers see it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SendMoneyFailure as failure:
                return _answer(failure)
            except RequestValidationError as error:
                return _answer(_invalid(error))
            except Problem as problem:
                return _answer(_from_problem(problem))
            except StarletteHTTPException as error:
                if error.status_code == 400 and error.detail == _NOT_PARSED:  # e.g. JSON nested too deep
                    return _answer(SendMoneyFailure(400, "3101", "malformed_json: the request body is not valid JSON"))
                return _answer(
                    SendMoneyFailure(error.status_code, _FSPIOP.get(error.status_code, "2001"), str(error.detail))
                )
            except Exception as error:  # noqa: BLE001 - answered, never a traceback; logged by type only (PII)
                log.error("unexpected %s while handling a Send Money request", type(error).__name__)
                log.debug("traceback of the unexpected error", exc_info=error)
                return _answer(SendMoneyFailure(500, "2001", "internal_error: an unexpected error occurred"))

        return answer


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a Send Money route's error answers: each an `errorResponse` (`SendMoneyError`)."""
    return {
        status: {"model": SendMoneyError, "description": f"{HTTPStatus(status).phrase}: `{{statusCode, message}}`"}
        for status in sorted({*statuses, 500})
    }


def ended(view: TransferView) -> SendMoneyFailure:
    """500 for a transfer that ended without completing (nothing moved, or a person must act: `message` says)."""
    error = view.last_error
    reason = f"{error.code}: {error.message}" if error else f"the transfer is {view.current_state}"
    return SendMoneyFailure(500, fspiop_code(error), reason, transfer_id=view.transfer_id)


@contextmanager
def as_failures() -> Iterator[None]:
    """The transfer service's domain errors in this dialect (`InvalidState` is the route's: its answer depends)."""
    try:
        yield
    except IdempotencyKeyReused:
        raise SendMoneyFailure(
            400, "3100", "idempotency_key_reused: this homeTransactionId (or idempotent_request_key) was already "
            "used for another request",
        ) from None  # fmt: skip
    except TransferNotFound as missing:
        raise SendMoneyFailure(404, "3208", f"transfer_not_found: no transfer with id {missing.transfer_id}") from None
    except HomeTransactionMismatch:
        raise SendMoneyFailure(400, "3100", "homeTransactionId: not the transfer's homeTransactionId") from None
    except TemporalUnavailable:
        raise SendMoneyFailure(
            503, "2003", "temporal_unavailable: the workflow service did not answer; retry the same request"
        ) from None
