"""Wire models of the CBS contract (`cbs-contract.openapi.yaml`), shared by the CBS simulator and its tests.

Money is `decimal.Decimal` inside and a string on the wire: requests accept up to 2 decimal places ("10",
"10.5", "10.50"); responses always write 2 ("1000000.00"). Floats are refused, so no amount is ever rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "SUPPORTED_ID_TYPES",
    "AccountStatus",
    "AccountStatusUpdate",
    "AccountUpsert",
    "CreditCheck",
    "CreditCreate",
    "HoldCreate",
    "Holder",
    "Limits",
    "PartyId",
    "format_money",
]

SUPPORTED_ID_TYPES = ("MSISDN", "ACCOUNT_ID")
_AMOUNT_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,2})?$"
AccountStatus = Literal["active", "blocked", "closed"]


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
