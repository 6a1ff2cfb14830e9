"""The published OpenAPI documents, made true to the real answers.

FastAPI documents a `422 HTTPValidationError` on every route with parameters or a body, but our handlers answer
invalid input otherwise: problem+json 422 `validation_error` (or 400 `malformed_json`) on the client API,
`{statusCode, message}` 400 on the backend API. So that default is dropped here; each route declares its real
error answers (`responses=`), whose schemas refer to the error models registered here by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

__all__ = ["OPTIONAL_HEADERS", "publish_openapi"]

OPTIONAL_HEADERS = "x-money-movement-headers"  # an operation's `openapi_extra` key: `optional` (see _document_headers)
_DEFAULT_422 = "#/components/schemas/HTTPValidationError"


def publish_openapi(
    app: FastAPI,
    models: Sequence[type[BaseModel]],
    headers: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Replace `app.openapi`: FastAPI's document, without its default 422, with `models` in its components.

    `headers` documents request headers a route reads as optional but answers 400 without (name → parameter
    fields such as `required`, `schema`, `description`): FastAPI would answer 422 if they were declared required.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _drop_default_422(document)
            _document_headers(document, headers or {})
            _add_models(document, models)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for path in document.get("paths", {}).values() for operation in path.values()]


def _drop_default_422(document: dict[str, Any]) -> None:
    for operation in _operations(document):
        responses = operation.get("responses", {})
        schema = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("$ref") == _DEFAULT_422:
            del responses["422"]
        operation["responses"] = dict(sorted(responses.items()))
    schemas = document.get("components", {}).get("schemas", {})
    if "HTTPValidationError" in schemas and _DEFAULT_422 not in json.dumps(document):
        del schemas["HTTPValidationError"]
        if "#/components/schemas/ValidationError" not in json.dumps(document):
            schemas.pop("ValidationError", None)


def _document_headers(document: dict[str, Any], headers: Mapping[str, dict[str, Any]]) -> None:
    """An operation marked `x-money-movement-headers: optional` (the Send Money API's) takes them as optional."""
    for operation in _operations(document):
        optional = operation.pop(OPTIONAL_HEADERS, None) == "optional"
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "header" and parameter.get("name") in headers:
                parameter.update({**headers[parameter["name"]], **({"required": False} if optional else {})})


def _add_models(document: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    _, definitions = models_json_schema(
        [(model, "serialization") for model in models], ref_template="#/components/schemas/{model}"
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(definitions.get("$defs", {}))
