"""Errors of the backend API: `{statusCode, message}` with an FSPIOP code; the SDK forwards known codes.

* BackendError - raise to answer `{statusCode, message}` with an HTTP status

| HTTP | statusCode | when |
| --- | --- | --- |
| 400 | 3100 | a body or path failing validation (field named); an id type the CBS does not serve;      |
|     |      | a transfer that does not match its quote (or whose quote expired)                         |
| 400 | 3101 | malformed JSON |
| 404 | 3204 | party not found at the CBS |
| 404 | 3208 | no inbound transfer with that id (`GET`/`PUT /transfers/{id}`) |
| 400 | 5100 | the CBS refused for another reason |
| 400 | 5106 | the account does not hold the currency |
| 400 | 5200 | over the account's credit or balance limit |
| 400 | 5400 | the account is blocked or closed |
| 503 | 2003 | the CBS or Temporal did not answer in time |
| 500 | 2001 | anything unexpected (logged by type only) |

Messages never carry a party id, nor the text of a lower layer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["BackendError", "error_response", "install_backend_error_handlers"]

log = logging.getLogger("mojaflow.backend")


class BackendError(Exception):
    """Raise in a route or service to answer the SDK with an FSPIOP error."""

    def __init__(self, http_status: int, status_code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code
        self.message = message


def error_response(error: BackendError) -> JSONResponse:
    return JSONResponse({"statusCode": error.status_code, "message": error.message}, status_code=error.http_status)


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
        code = "3002" if error.status_code == 404 else "3000"  # unknown URI / generic client error
        return error_response(BackendError(error.status_code, code, str(error.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected %s while handling a backend request", type(error).__name__)
        return error_response(BackendError(500, "2001", "internal server error"))
