"""The pm4ml Send Money API's bodies (`specs/pm4ml-core-connector-send-money-api.yaml`), as strict as our own
where it matters to money: amounts in Mojaloop's format within the currency's decimals, ISO 4217 currencies, party
ids and names without control characters. Fields the spec does not name are ignored, as pm4ml connectors do: a
bank's existing client may send more than the spec says.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator
from pydantic.alias_generators import to_camel

from mojaflow.models import (
    Amount,
    Currency,
    PartyIdentifier,
    PartyIdType,
    Payee,
    Payer,
    Text,
    TransferOrder,
    TransferView,
    check_amount_precision,
)

__all__ = [
    "AccountsFailed",
    "AccountsRegistered",
    "AccountsRequest",
    "BirthDetails",
    "ConfirmSendMoney",
    "ConfirmSendMoneyResponse",
    "MerchantPaymentRequest",
    "PayeeDetails",
    "SendMoneyError",
    "SendMoneyPayer",
    "SendMoneyRequest",
    "SendMoneyResponse",
    "TransferProgress",
]

_DAY_FIRST = re.compile(r"(\d{2})-(\d{2})-(\d{4})", re.ASCII)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class BirthDetails(_Body):
    birth_date: str = Field(alias="BirthDt", description="DD-MM-YYYY (as the spec's example) or YYYY-MM-DD")
    province: Text | None = Field(default=None, alias="PrvcOfBirth", max_length=128)
    city: Text = Field(alias="CityOfBirth", max_length=128)
    country: Text = Field(alias="CtryOfBirth", max_length=128)

    @field_validator("birth_date")
    @classmethod
    def _a_date(cls, value: str) -> str:
        """The SDK's `dateOfBirth`: YYYY-MM-DD."""
        day_first = _DAY_FIRST.fullmatch(value)
        text = f"{day_first[3]}-{day_first[2]}-{day_first[1]}" if day_first else value
        try:
            if not _ISO_DATE.fullmatch(text):
                raise ValueError
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError("must be a date, DD-MM-YYYY or YYYY-MM-DD") from None


class SendMoneyPayer(_Body):
    name: Text = Field(min_length=1, max_length=128)
    payer_id: PartyIdentifier = Field(alias="payerId", description="of type MOJAFLOW_SEND_MONEY_PAYER_ID_TYPE")
    birth: BirthDetails | None = Field(default=None, alias="DateAndPlaceOfBirth")


class _Order(_Body):
    home_transaction_id: Text | None = Field(
        default=None, alias="homeTransactionId", min_length=1, max_length=128,
        description="Required without the Money Movement headers: a repeated request with it is the same transfer",
    )  # fmt: skip
    sub_id: PartyIdentifier | None = Field(default=None, alias="subId", description="the payee's idSubValue")
    payee_id: PartyIdentifier = Field(alias="payeeId")
    payee_id_type: PartyIdType = Field(alias="payeeIdType")
    purpose_code: Text | None = Field(default=None, alias="purposeCode", min_length=1, max_length=35)
    transaction_type: Literal["TRANSFER"] = Field(alias="transactionType")
    payer: SendMoneyPayer

    def amount(self) -> tuple[Literal["SEND", "RECEIVE"], str, str]:
        """amountType, amount and currency."""
        raise NotImplementedError

    def order(self, payer_id_type: PartyIdType, home_transaction_id: str) -> TransferOrder:
        """The domain's order: the payer by its id of `payer_id_type` (MOJAFLOW_SEND_MONEY_PAYER_ID_TYPE)."""
        amount_type, amount, currency = self.amount()
        birth = self.payer.birth
        return TransferOrder(
            home_transaction_id=home_transaction_id,
            payer=Payer(
                id_type=payer_id_type,
                id_value=self.payer.payer_id,
                display_name=self.payer.name,
                date_of_birth=birth.birth_date if birth else None,
            ),
            payee=Payee(id_type=self.payee_id_type, id_value=self.payee_id, id_sub_value=self.sub_id),
            amount_type=amount_type,
            currency=currency,
            amount=amount,
            purpose_code=self.purpose_code,
        )


class SendMoneyRequest(_Order):
    """`POST /send-money` (P2P): the payer sends `sendAmount`."""

    send_amount: Amount = Field(alias="sendAmount")
    send_currency: Currency = Field(alias="sendCurrency")
    receive_currency: Currency | None = Field(
        default=None, alias="receiveCurrency", description="Not in the spec's request; when sent, sendCurrency's"
    )

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> Self:
        check_amount_precision(type(self).__name__, "sendAmount", self.send_amount, self.send_currency)
        return self

    def amount(self) -> tuple[Literal["SEND", "RECEIVE"], str, str]:
        return "SEND", self.send_amount, self.send_currency

    @property
    def fx(self) -> bool:
        return self.receive_currency is not None and self.receive_currency != self.send_currency


class MerchantPaymentRequest(_Order):
    """`POST /merchant-payment` (P2B): the merchant receives `receiveAmount`."""

    send_currency: Currency = Field(alias="sendCurrency")
    receive_amount: Amount = Field(alias="receiveAmount")
    receive_currency: Currency = Field(alias="receiveCurrency")

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> Self:
        check_amount_precision(type(self).__name__, "receiveAmount", self.receive_amount, self.receive_currency)
        return self

    def amount(self) -> tuple[Literal["SEND", "RECEIVE"], str, str]:
        return "RECEIVE", self.receive_amount, self.receive_currency

    @property
    def fx(self) -> bool:
        return self.send_currency != self.receive_currency


class ConfirmSendMoney(_Body):
    """`PUT /send-money/{transferId}`, `PUT /merchant-payment/{transferId}`."""

    accept_quote: StrictBool = Field(alias="acceptQuote")
    home_transaction_id: Text = Field(alias="homeTransactionId", min_length=1, max_length=128)


class AccountsRequestItem(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)  # as the SDK's own schema

    id_type: PartyIdType = Field(alias="idType")
    id_value: PartyIdentifier = Field(alias="idValue")
    id_sub_value: PartyIdentifier | None = Field(default=None, alias="idSubValue")
    currency: Currency | None = None


AccountsRequest = list[AccountsRequestItem]


# -- answers -----------------------------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class PayeeDetails(_Answer):
    id_type: str
    id_value: str
    fsp_id: str | None = None
    name: str | None = None


class SendMoneyResponse(_Answer):
    """The quote, for the caller to accept (`PUT`): amounts in Mojaloop's format; `sourceFees` are ours (none)."""

    payee_details: PayeeDetails
    send_amount: str
    send_currency: str
    receive_amount: str
    receive_currency: str
    target_fees: str = Field(description="the payee FSP's fee (payeeFspFee)")
    source_fees: str = Field(description="the payer FSP's (the bank's) fee: 0")
    transaction_id: str = Field(description="our transferId")
    home_transaction_id: str

    @classmethod
    def of(cls, view: TransferView, payee_id_type: str, payee_id: str) -> Self:
        """The quote of a transfer that has one; the payee's id as the request named it (we keep none)."""
        quote, payee = view.quote, view.payee
        assert quote is not None
        return cls(
            payee_details=PayeeDetails(
                id_type=payee_id_type,
                id_value=payee_id,
                fsp_id=payee.fsp_id if payee else None,
                name=payee.name if payee else None,
            ),
            send_amount=quote.transfer_amount,
            send_currency=quote.currency,
            receive_amount=quote.payee_receive_amount,
            receive_currency=quote.currency,
            target_fees=quote.fees,
            source_fees="0",
            transaction_id=view.transfer_id,
            home_transaction_id=view.home_transaction_id or "",
        )


class ConfirmSendMoneyResponse(_Answer):
    transfer_id: str = Field(description="our transferId")


class TransferProgress(_Answer):
    """202: the transfer goes on (`TRANSFERRING`, `RECONCILING`, `SETTLING`...); `GET /transfers/{transferId}`."""

    transfer_id: str
    current_state: str


class SendMoneyError(_Answer):
    """The spec's `errorResponse`: the FSPIOP code and the reason (our code first, e.g. `fx_not_supported: ...`),
    with our transferId when there is a transfer."""

    status_code: str = Field(pattern=r"^[1-9]\d{3}$")
    message: str
    transfer_id: str | None = None


class AccountsRegistered(_Answer):
    """The SDK's `accountsResponse` as it came: `response` has an entry per id, with `error` where the ALS refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, extra="allow")

    accounts: list[dict[str, Any]]
    response: list[dict[str, Any]] | None = None
    current_state: str | None = None


class AccountsFailed(_Answer):
    """The SDK's `errorAccountsResponse` as it came (`statusCode` its FSPIOP code, or `504`), or ours: no
    `executionState` then."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, extra="allow")

    status_code: str
    message: str
    execution_state: dict[str, Any] | None = None
