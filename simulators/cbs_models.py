"""Wire models of the CBS contract (`cbs-contract.openapi.yaml`), shared by the CBS simulator and its tests.

Money is `decimal.Decimal` inside and a string on the wire: requests accept up to 2 decimal places ("10",
"10.5", "10.50"); responses always write 2 ("1000000.00"). Floats are refused, so no amount is ever rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "SUPPORTED_ID_TYPES",
    "AccountStatus",
    "AccountStatusUpdate",
    "AccountUpsert",
    "CreditCheck",
    "FAULT_OPERATIONS",
    "CreditCreate",
    "FaultSpec",
    "HoldCreate",
    "Holder",
    "Limits",
    "PartyId",
    "format_money",
]

SUPPORTED_ID_TYPES = ("MSISDN", "ACCOUNT_ID")
_AMOUNT_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,2})?$"
AccountStatus = Literal["active", "blocked", "closed"]
# Operations the `/_sim/faults/{operation}` switch and `/_sim/calls` counters know, in contract order.
FAULT_OPERATIONS = (
    "resolve_party",
    "hold",
    "commit_hold",
    "release_hold",
    "credit_check",
    "reserve_credit",
    "commit_credit",
    "release_credit",
    "list_holds",
)


def _amount_from_string(value: object) -> object:
    """Only strings: a JSON number could already have lost precision before we see it."""
    if not isinstance(value, str):
        raise ValueError('amount must be a decimal string such as "10.50"')
    if not re.fullmatch(_AMOUNT_PATTERN, value):
        raise ValueError("amount must match ^[0-9]{1,18}(\\.[0-9]{1,2})?$")
    return Decimal(value)


Money = Annotated[Decimal, BeforeValidator(_amount_from_string)]
PositiveMoney = Annotated[Decimal, BeforeValidator(_amount_from_string), Field(gt=0)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Key = Annotated[str, Field(min_length=1, max_length=128)]


def format_money(value: Decimal) -> str:
    """Two decimal places, no exponent: Decimal("1E+6") → "1000000.00"."""
    return f"{value.quantize(Decimal('0.01')):f}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PartyId(_Model):
    id_type: Literal["MSISDN", "ACCOUNT_ID"] = Field(alias="idType")
    id_value: Annotated[str, Field(min_length=1, max_length=128)] = Field(alias="idValue")
    id_sub_value: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(default=None, alias="idSubValue")


class Holder(_Model):
    display_name: str = Field(alias="displayName")
    first_name: str = Field(alias="firstName")
    middle_name: str | None = Field(default=None, alias="middleName")
    last_name: str = Field(alias="lastName")
    date_of_birth: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = Field(
        default=None, alias="dateOfBirth"
    )


class Limits(_Model):
    max_credit_amount: Money | None = Field(default=None, alias="maxCreditAmount")
    max_balance: Money | None = Field(default=None, alias="maxBalance")


class AccountUpsert(_Model):
    """Simulator admin: create or replace an account (`POST /_sim/accounts`, and the `--seed` file)."""

    account_id: Key = Field(alias="accountId")
    currency: Currency
    status: AccountStatus = "active"
    balance: Money
    limits: Limits = Field(default_factory=Limits)
    holder: Holder
    parties: list[PartyId] = Field(min_length=1)


class AccountStatusUpdate(_Model):
    status: AccountStatus


class HoldCreate(_Model):
    hold_key: Key = Field(alias="holdKey")
    account_id: Key = Field(alias="accountId")
    amount: PositiveMoney
    currency: Currency


class CreditCheck(_Model):
    account_id: Key = Field(alias="accountId")
    amount: PositiveMoney
    currency: Currency


class CreditCreate(CreditCheck):
    reservation_key: Key = Field(alias="reservationKey")


class FaultSpec(_Model):
    """`PUT /_sim/faults/{operation}`: how the next calls of one operation answer (in memory, not persisted).

    * `down`: `503 {"code": "unavailable"}`; the operation does not happen.
    * `slow`: wait `delayS`, then answer normally; the operation happens once, even if the caller went away.
    * `refuse`: `httpStatus` (default 409) with the contract's error body `{"code": code, "message"}`; nothing happens.

    `times` is how many calls the fault applies to (null: until `DELETE /_sim/faults`).
    """

    mode: Literal["down", "slow", "refuse"]
    delay_s: float = Field(default=0.0, alias="delayS", ge=0, le=3600)
    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    http_status: int = Field(default=409, alias="httpStatus", ge=400, le=599)
    times: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _refuse_has_code(self) -> FaultSpec:
        if self.mode == "refuse" and self.code is None:
            raise ValueError("mode refuse needs a code")
        return self
