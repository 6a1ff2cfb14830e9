"""Validate bodies against a schema of an OpenAPI 3.0 spec kept in tests/fixtures/specs (OpenAPI 3.0's schemas are
JSON Schema draft 4, give or take `example`; `$ref`s resolve inside the spec's own `components`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

__all__ = ["SEND_MONEY_SPEC", "SDK_ACCOUNTS_SCHEMAS", "components", "schema_errors"]

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "specs"
SEND_MONEY_SPEC = SPECS / "pm4ml-core-connector-send-money-api.yaml"
SDK_ACCOUNTS_SCHEMAS = SPECS / "sdk-outbound-accounts-schemas.json"


@cache
def components(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    return dict(document["components"])


def schema_errors(path: Path, name: str, body: Any, *, patch: dict[str, Any] | None = None) -> list[str]:
    """Why `body` is not a `name` of the spec at `path` (empty: it is). `patch` replaces schemas by name first, e.g.
    to widen an enum the spec leaves narrow."""
    schemas = {**components(path)["schemas"], **(patch or {})}
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
    validator = jsonschema_rs.Draft4Validator(schema)
    return [f"{'/'.join(map(str, error.instance_path))}: {error.message}" for error in validator.iter_errors(body)]
