"""The CBS contract (`cbs-contract.openapi.yaml`) as data, for `mojaflow cbs-check`.

    contract = Contract.load()
    contract.response_errors("createHold", 201, body)   # [] when the body is the documented Hold

Schemas are validated with jsonschema-rs as JSON Schema 2020-12 (OpenAPI 3.1's dialect), `$ref`s resolved inside the
contract's own `components`, formats checked. Reasons name the field and the rule broken, never the value found:
a bank's answer may hold names and accounts, and the reasons are printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

__all__ = ["CONTRACT_PATH", "Contract", "Operation"]

CONTRACT_PATH = Path(__file__).resolve().parents[1] / "cbs-contract.openapi.yaml"

# The contract's money rule that its `Money` schema (0 to 2 decimals, shared with requests) cannot say alone:
# responses always carry exactly 2 decimal places.
_MONEY_FIELDS = frozenset({"amount", "balance", "held", "pendingCredits", "available", "maxCreditAmount", "maxBalance"})
_RESPONSE_MONEY = re.compile(r"^[0-9]{1,18}\.[0-9]{2}$")
_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One operation of the contract: `operation_id` as the contract names it, and the path it is served on."""

    operation_id: str
    method: str
    path: str
    simulator_only: bool


class Contract:
    """The contract's operations and the documented responses of each (status → schema)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document
        self._validators: dict[tuple[str, int], jsonschema_rs.Validator | None] = {}

    @classmethod
    def load(cls, path: Path = CONTRACT_PATH) -> Contract:
        """Read the contract; `OSError` or `ValueError` (not a YAML OpenAPI document) when it cannot be used."""
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not YAML ({type(error).__name__})") from None
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            raise ValueError(f"{path}: not an OpenAPI document (no paths)")
        return cls(document)

    @cached_property
    def operations(self) -> dict[str, Operation]:
        """Every operation by operationId, the simulator's admin API (tag `simulator-only`) included."""
        found: dict[str, Operation] = {}
        for path, item in self._document["paths"].items():
            for method in _METHODS:
                spec = item.get(method)
                if isinstance(spec, dict) and "operationId" in spec:
                    simulator_only = "simulator-only" in spec.get("tags", [])
                    found[spec["operationId"]] = Operation(spec["operationId"], method.upper(), path, simulator_only)
        return found

    @cached_property
    def bank_operations(self) -> list[str]:
        """The operations a bank implements (the contract's, less the simulator's admin API)."""
        return [op for op, spec in self.operations.items() if not spec.simulator_only]

    def documented_statuses(self, operation_id: str) -> set[int]:
        return {int(status) for status in self._responses(operation_id)}

    def response_errors(self, operation_id: str, status: int, body: Any) -> list[str]:
        """Why `body` is not what the contract documents for `operation_id` answering `status` (empty: it is)."""
        if status not in self.documented_statuses(operation_id):
            documented = ", ".join(str(s) for s in sorted(self.documented_statuses(operation_id)))
            return [f"HTTP {status} is not a documented answer (documented: {documented})"]
        validator = self._validator(operation_id, status)
        if validator is None:
            return []
        if body is None:
            return ["the body is not JSON"]
        errors = [_describe(error) for error in validator.iter_errors(body)]
        return errors + _money_errors(body)

    def _responses(self, operation_id: str) -> dict[str, Any]:
        operation = self.operations[operation_id]
        responses = self._document["paths"][operation.path][operation.method.lower()]["responses"]
        return dict(responses)

    def _validator(self, operation_id: str, status: int) -> jsonschema_rs.Validator | None:
        if (operation_id, status) not in self._validators:
            response = self._resolve(self._responses(operation_id)[str(status)])
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            self._validators[(operation_id, status)] = (
                None
                if schema is None
                else jsonschema_rs.Draft202012Validator(
                    {"allOf": [schema], "components": self._document.get("components", {})}, validate_formats=True
                )
            )
        return self._validators[(operation_id, status)]

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        """A `#/components/...` reference followed to what it names (responses are referenced, not inlined)."""
        while isinstance(item, dict) and "$ref" in item:
            node: Any = self._document
            for part in str(item["$ref"]).removeprefix("#/").split("/"):
                node = node[part]
            item = node
        return item


def _where(path: list[str | int]) -> str:
    return "/".join(str(part) for part in path) or "(body)"


def _describe(error: jsonschema_rs.ValidationError) -> str:
    """The broken rule with what it expected (`as_dict()`), never the value found."""
    kind = error.kind
    expected = kind.as_dict()
    if kind.name == "required":
        return f"{_where(list(error.instance_path))}: missing required property {expected.get('property')!r}"
    if kind.name == "enum" and len(expected.get("options") or []) > 4:
        expected = {"options": f"one of the contract's {len(expected['options'])} values"}
    rule = ", ".join(f"{name} {value!r}" for name, value in expected.items())
    return f"{_where(list(error.instance_path))}: breaks {kind.name}" + (f" ({rule})" if rule else "")


def _money_errors(body: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    errors: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key in _MONEY_FIELDS and isinstance(value, str) and not _RESPONSE_MONEY.match(value):
                errors.append(f"{_where([*path, key])}: money in a response carries exactly 2 decimal places")
            errors += _money_errors(value, (*path, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            errors += _money_errors(value, (*path, index))
    return errors
