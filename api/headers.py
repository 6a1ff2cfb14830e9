"""The Money Movement headers (DESIGN "Money Movement headers"): required on our client API's POST and PUT,
optional on the Send Money API's (validated as a whole when any is sent).

Their names contain underscores, so each `Header` has an explicit alias and `convert_underscores=False`.
Missing or malformed → 400 naming the header and its rule (validated here, not by FastAPI, which says 422).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header

from api.problems import Problem

__all__ = [
    "MoneyMovementHeaders",
    "MoneyMovementHeadersDep",
    "OptionalMoneyMovementHeadersDep",
    "PAYMENT_CHANNELS",
    "PRODUCTS",
]

PRODUCTS = ("retail_payments", "business_payments")
PAYMENT_CHANNELS = (
    "retail_banking", "commercial_banking", "smb_banking", "bank_bos", "atm",
    "kiosk", "pos", "mobile_banking", "csm", "online",
)  # fmt: skip
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_RULES: dict[str, tuple[str, re.Pattern[str]]] = {
    "client_key": ("must match ^[a-zA-Z0-9]{1,10}$", re.compile(r"^[a-zA-Z0-9]{1,10}$")),
    "product": (f"must be one of {', '.join(PRODUCTS)}", re.compile(rf"^({'|'.join(PRODUCTS)})$")),
    "payment_channel": (
        f"must be one of {', '.join(PAYMENT_CHANNELS)}",
        re.compile(rf"^({'|'.join(PAYMENT_CHANNELS)})$"),
    ),
    "idempotent_request_key": ("must match ^[a-zA-Z0-9_=-]{1,50}$", re.compile(r"^[a-zA-Z0-9_=-]{1,50}$")),
    "timestamp": ("must be ISO 8601 with a UTC offset, e.g. 2020-09-18T17:31:34.000-05:30", _TIMESTAMP),
}


@dataclass(frozen=True)
class MoneyMovementHeaders:
    client_key: str
    product: str
    payment_channel: str
    idempotent_request_key: str
    timestamp: str


def _valid_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate_headers(values: dict[str, str | None]) -> MoneyMovementHeaders:
    errors = []
    for name, (rule, pattern) in _RULES.items():
        value = values.get(name)
        if value is None:
            errors.append({"field": name, "message": f"header {name} is required; it {rule}"})
        elif not pattern.match(value) or (name == "timestamp" and not _valid_timestamp(value)):
            errors.append({"field": name, "message": f"header {name} {rule}"})
    if errors:
        detail = "; ".join(error["message"] for error in errors)
        raise Problem(400, "invalid_header", "Invalid Money Movement headers", detail, errors=errors)
    return MoneyMovementHeaders(**{name: values[name] for name in _RULES})  # type: ignore[arg-type]


def _money_movement_headers(
    client_key: Annotated[str | None, Header(alias="client_key", convert_underscores=False)] = None,
    product: Annotated[str | None, Header(alias="product")] = None,
    payment_channel: Annotated[str | None, Header(alias="payment_channel", convert_underscores=False)] = None,
    idempotent_request_key: Annotated[
        str | None, Header(alias="idempotent_request_key", convert_underscores=False)
    ] = None,
    timestamp: Annotated[str | None, Header(alias="timestamp")] = None,
) -> MoneyMovementHeaders:
    return validate_headers(
        {
            "client_key": client_key,
            "product": product,
            "payment_channel": payment_channel,
            "idempotent_request_key": idempotent_request_key,
            "timestamp": timestamp,
        }
    )


MoneyMovementHeadersDep = Annotated[MoneyMovementHeaders, Depends(_money_movement_headers)]


def _optional_money_movement_headers(
    client_key: Annotated[str | None, Header(alias="client_key", convert_underscores=False)] = None,
    product: Annotated[str | None, Header(alias="product")] = None,
    payment_channel: Annotated[str | None, Header(alias="payment_channel", convert_underscores=False)] = None,
    idempotent_request_key: Annotated[
        str | None, Header(alias="idempotent_request_key", convert_underscores=False)
    ] = None,
    timestamp: Annotated[str | None, Header(alias="timestamp")] = None,
) -> MoneyMovementHeaders | None:
    """None when none is sent; else all five, each valid (400 otherwise), as on `/transfers`."""
    values = {
        "client_key": client_key,
        "product": product,
        "payment_channel": payment_channel,
        "idempotent_request_key": idempotent_request_key,
        "timestamp": timestamp,
    }
    if all(value is None for value in values.values()):
        return None
    return validate_headers(values)


OptionalMoneyMovementHeadersDep = Annotated[MoneyMovementHeaders | None, Depends(_optional_money_movement_headers)]
