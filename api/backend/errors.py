"""Errors of the backend API: `{statusCode, message}` with an FSPIOP code; the SDK forwards known codes.

* BackendError - raise to answer `{statusCode, message}` with an HTTP status

| HTTP | statusCode | when |
| --- | --- | --- |
| 400 | 3100 | a body or path failing validation (field named); an id type the CBS does not serve;      |
|     |      | a transfer that does not match its quote (or whose quote expired)                         |
| 400 | 3101 | malformed JSON (or nested too deep to parse) |
| 404 | 3204 | party not found at the CBS |
| 404 | 3208 | no inbound transfer with that id (`GET /transfers/{id}`) |
| 400 | 5100 | the CBS refused for another reason |
| 400 | 5106 | the account does not hold the currency, or the bank serves it at all (MOJAFLOW_CURRENCIES) |
| 400 | 5200 | over the account's credit or balance limit |
| 400 | 5400 | the account is blocked or closed |
| 400 | 5105 | a transfer reserved once, then aborted or failed, posted again |
| 503 | 2003 | the CBS or Temporal did not answer in time |
| 500 | 2001 | anything unexpected (logged by type only) |

Messages never carry a party id, nor the text of a lower layer. `error_responses` documents them on each route.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["BackendError", "ErrorResponse", "error_response", "error_responses", "install_backend_error_handlers"]

log = logging.getLogger("mojaflow.backend")
# What FastAPI raises (an HTTPException 400) when decoding the body fails other than by a JSONDecodeError.
_BODY_NOT_PARSED = "There was an error parsing the body"


class BackendError(Exception):
    """Raise in a route or service to answer the SDK with an FSPIOP error."""

    def __init__(self, http_status: int, status_code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code
        self.message = message


class ErrorResponse(BaseModel):
    """The spec's `errorResponse`: the SDK looks `statusCode` up as an FSPIOP error code."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    status_code: str = Field(alias="statusCode", pattern=r"^\d{4}$", description="FSPIOP error code")
    message: str = Field(description="What went wrong; never a party id")


# What each statusCode means (the table above), for the published document.
_MEANINGS = {
    "2001": "unexpected (internal server error)",
    "3000": "the caller is outside MOJAFLOW_BACKEND_ALLOWED_CLIENTS (`api.backend.network`)",
    "2003": "the CBS or Temporal did not answer in time: retry",
    "3100": "validation error, naming the field",
    "3101": "malformed JSON",
    "3204": "party not found",
    "3208": "transfer id not found",
    "5100": "the CBS (payee FSP) refused",
    "5105": "the transfer was already aborted or failed",
    "5106": "payee unsupported currency",
    "5200": "payee limit exceeded",
    "5400": "payee account blocked or closed",
}


def error_responses(codes: Mapping[int, Sequence[str]]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: for each HTTP status, an `ErrorResponse` with the FSPIOP codes listed.

    Only a 400's `statusCode` is left open (a pattern), the others are narrowed to those listed. Every route
    may also answer 403 `3000` (a caller outside the allow-list) and 500 `2001`.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status, listed in sorted({**codes, 403: ["3000"], 500: ["2001"]}.items()):
        schema: dict[str, Any] = {"$ref": "#/components/schemas/ErrorResponse"}
        if status != 400:
            narrowed = {"type": "object", "properties": {"statusCode": {"enum": list(listed)}}}
            schema = {"allOf": [schema, narrowed]}
        meanings = "; ".join(f"`{code}` {_MEANINGS[code]}" for code in listed)
        responses[status] = {
            "description": f"{HTTPStatus(status).phrase}: {meanings}",
            "content": {"application/json": {"schema": schema}},
        }
    return responses


def error_response(error: BackendError) -> JSONResponse:
    body = ErrorResponse.model_construct(status_code=error.status_code, message=error.message)
    return JSONResponse(body.model_dump(by_alias=True), status_code=error.http_status)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location[1:]] if location and location[0] in ("body", "path") else []
    return ".".join(parts) or "body"


def install_backend_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BackendError)
    async def _backend(_: Request, error: BackendError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        if any(item.get("type") == "json_invalid" for item in errors):
            return error_response(BackendError(400, "3101", "malformed JSON: the body could not be parsed"))
        # `msg` only, never `input`: the rejected value may be a party id.
        details = "; ".join(f"{_field(tuple(item.get('loc', ())))}: {item.get('msg', 'invalid')}"
                            for item in errors)  # fmt: skip
        return error_response(BackendError(400, "3100", details[:500]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == _BODY_NOT_PARSED:  # e.g. JSON nested too deep to parse
            return error_response(BackendError(400, "3101", "malformed JSON: the body could not be parsed"))
        code = "3002" if error.status_code == 404 else "3000"  # unknown URI / generic client error
        return error_response(BackendError(error.status_code, code, str(error.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected %s while handling a backend request", type(error).__name__)
        return error_response(BackendError(500, "2001", "internal server error"))
