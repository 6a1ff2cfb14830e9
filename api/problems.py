"""RFC 9457 problem details for our client API, with a stable `code`; one handler renders them all.

Bad input is a 4xx naming the field or header; never a 500 and never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["Problem", "install_problem_handlers", "problem_response"]

log = logging.getLogger("mojaflow.api")

PROBLEM_JSON = "application/problem+json"
# What FastAPI raises (an HTTPException 400) when decoding the body fails other than by a JSONDecodeError.
_BODY_NOT_PARSED = "There was an error parsing the body"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self, status: int, code: str, title: str, detail: str, *, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:mojaflow:problem:{problem.code}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body",)]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, problem: Problem) -> JSONResponse:
        return problem_response(problem)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        if any(item.get("type") == "json_invalid" for item in errors):
            return problem_response(
                Problem(400, "malformed_json", "Malformed JSON", "the request body is not valid JSON")
            )
        fields = [{"field": _field(tuple(item.get("loc", ()))), "message": str(item.get("msg", ""))} for item in errors]
        detail = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
        return problem_response(Problem(422, "validation_error", "Invalid request", detail, errors=fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and error.detail == _BODY_NOT_PARSED:
            # FastAPI could not decode the body at all, e.g. JSON nested too deep for the parser (RecursionError)
            return problem_response(
                Problem(
                    400, "malformed_json", "Malformed JSON", "the request body is not valid JSON (or nested too deep)"
                )
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return problem_response(Problem(error.status_code, code, str(error.detail), str(error.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        # Logged by type only: messages of lower layers may carry personal data.
        log.error("unexpected %s while handling a request", type(error).__name__)
        log.debug("traceback of the unexpected error", exc_info=error)
        return problem_response(Problem(500, "internal_error", "Internal error", "an unexpected error occurred"))
