"""RFC 9457 problem details for our client API, with a stable `code`; one handler renders them all.

Bad input is a 4xx naming the field or header; never a 500 and never a stack trace. Every answer is a
`ProblemDetails`, and each route documents the statuses and codes it can answer with `problem_responses`,
so the published OpenAPI says what the API really sends (tests/api/test_openapi_conformance.py checks it).
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
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "PROBLEM_CODES",
    "PROBLEM_JSON",
    "FieldProblem",
    "Problem",
    "ProblemDetails",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
]

log = logging.getLogger("mojaflow.api")

PROBLEM_JSON = "application/problem+json"
_TYPE_PREFIX = "urn:mojaflow:problem:"
# What FastAPI raises (an HTTPException 400) when decoding the body fails other than by a JSONDecodeError.
_BODY_NOT_PARSED = "There was an error parsing the body"

# Every `code` the client API answers, and when (the README's table says the same).
PROBLEM_CODES: dict[str, str] = {
    "invalid_header": "a Money Movement header is missing or breaks its rule; `errors` names each header",
    "malformed_json": "the body is not JSON, or is nested too deep to parse",
    "invalid_cursor": "`cursor` is not one this API returned",
    "validation_error": "the body or a parameter fails the schema or a rule; `errors` names each field",
    "idempotency_key_reused": "`idempotent_request_key` was already used with a different body",
    "transfer_not_found": "no transfer with that id (on PUT: none of this client's outbound transfers)",
    "invalid_state": "the transfer does not (or no longer) await that decision",
    "temporal_unavailable": "the workflow service did not answer: retry with the same idempotency key",
    "internal_error": "unexpected; retry with the same idempotency key (a transfer never starts twice)",
    "not_found": "no such URL",
    "method_not_allowed": "the URL exists, not with that method",
    "unauthorized": "no credential, or one unknown, revoked or malformed (`WWW-Authenticate` says which)",
    "client_key_mismatch": "the client_key header names another client than the credential's",
    "forbidden_origin": "the codec endpoint serves the Temporal Web UI's origins only",
    "codec_local_only": "the codec endpoint answers on this machine only",
    "unknown_key_id": "the payloads name a key id this deployment does not hold",
    "undecodable": "the payloads were not encrypted with this key",
    "rate_limited": "more POSTs with this credential than MOJAFLOW_RATE_LIMIT_PER_MINUTE; see `Retry-After`",
    "body_too_large": "the request body is larger than MOJAFLOW_MAX_BODY_BYTES (also when sent chunked)",
    "headers_too_large": "the request line and headers are larger than MOJAFLOW_MAX_HEADER_BYTES",
    "operator_required": "the codec endpoint and `/metrics` take an operator's API key (or a token), not a client's",
    "http_error": "any other HTTP error",
    # webhooks (api/webhooks.py)
    "unsafe_url": "a webhook URL or token URL mojaflow may not call (SSRF guard): not https, credentials in it, or a "
    "host that is or resolves to a loopback, private, link-local, CGNAT, multicast or metadata address",
    "subscription_not_found": "no webhook subscription with that id (another client's is not found either)",
    "subscription_inactive": "the subscription is disabled or deleted: its deliveries are not sent again",
    "delivery_not_found": "no webhook delivery with that id (another client's is not found either)",
    "delivery_not_retryable": "the delivery's first attempt is still to be made (PENDING), or its workflow is making "
    "its last attempt: retry in a moment",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        pm4ml: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers  # e.g. `WWW-Authenticate` on a 401
        self.pm4ml = pm4ml  # (statusCode, message) for the pm4ml Send Money API's clients, on routes both read


class FieldProblem(BaseModel):
    """One rejected input: a header, a body field (dotted path, e.g. `from.idValue`) or a parameter."""

    model_config = ConfigDict(extra="forbid")

    field: str
    message: str


class ProblemDetails(BaseModel):
    """An error answer (RFC 9457 `application/problem+json`) with our stable `code`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str = Field(pattern=rf"^{_TYPE_PREFIX}[a-z_]+$", description=f"`{_TYPE_PREFIX}` + `code`")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str = Field(description="What was wrong with this request, naming the field or header")
    code: str = Field(pattern=r"^[a-z_]+$", description="Stable error code (see the README's table)")
    errors: list[FieldProblem] | SkipJsonSchema[None] = Field(  # absent when None: never sent as null
        default=None, description="Each rejected input (`invalid_header`, `validation_error`)"
    )
    status_code: str | SkipJsonSchema[None] = Field(
        default=None,
        alias="statusCode",
        pattern=r"^[1-9]\d{3}$",
        description="On routes the pm4ml Send Money API's clients read too (`GET /transfers/{id}`): the FSPIOP code",
    )
    message: str | SkipJsonSchema[None] = Field(default=None, description="With `statusCode`: the reason")


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    # Constructed without validation: an error handler must answer, whatever it was given.
    errors = [FieldProblem.model_construct(field=e["field"], message=e["message"]) for e in problem.errors or []]
    body = ProblemDetails.model_construct(
        type=f"{_TYPE_PREFIX}{problem.code}",
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        code=problem.code,
        errors=errors or None,
        status_code=problem.pm4ml[0] if problem.pm4ml else None,
        message=problem.pm4ml[1] if problem.pm4ml else None,
    )
    content = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(content, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def problem_responses(codes: Mapping[int, Sequence[str]]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: for each status, a `ProblemDetails` whose `code` is one of those listed.

    `problem_responses({404: ["transfer_not_found"]})`; raises `ValueError` for a code missing from
    `PROBLEM_CODES`, so the catalogue stays complete. Every route may also answer 500 `internal_error`.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status, listed in sorted({**codes, 500: ["internal_error"]}.items()):
        unknown = [code for code in listed if code not in PROBLEM_CODES]
        if unknown:
            raise ValueError(f"undocumented problem codes {unknown}: add them to PROBLEM_CODES")
        narrowed = {
            "type": "object",
            "properties": {
                "status": {"const": status},
                "code": {"enum": list(listed)},
                "type": {"enum": [f"{_TYPE_PREFIX}{code}" for code in listed]},
            },
        }
        responses[status] = {
            "description": f"{HTTPStatus(status).phrase}: "
            + "; ".join(f"`{code}`: {PROBLEM_CODES[code]}" for code in listed),
            "content": {
                PROBLEM_JSON: {"schema": {"allOf": [{"$ref": "#/components/schemas/ProblemDetails"}, narrowed]}}
            },
        }
    return responses


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body",)]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, problem: Problem) -> JSONResponse:
        return problem_response(problem, problem.headers)

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
