"""Request bodies the SDK simulator accepts: the SDK's outbound API subset and the `/_sim` fault switch.

The transfer request mirrors the validation of SDK 18.0.2 closely enough that a body the real SDK refuses with
400 is refused here too (required fields, enums, amount pattern); extra fields are kept and echoed back, as the
SDK does.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

__all__ = [
    "AMOUNT_PATTERN",
    "AutoAccept",
    "FaultSpec",
    "SwitchState",
    "SwitchStateUpdate",
    "TransferContinuation",
    "TransferParty",
    "TransferRequest",
]

AMOUNT_PATTERN = r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$"
PartyIdType = Literal["MSISDN", "EMAIL", "PERSONAL_ID", "BUSINESS", "DEVICE", "ACCOUNT_ID", "IBAN", "ALIAS"]
_YEAR_S = 365 * 86400.0
AutoAccept = Literal["none", "party", "quotes", "both"]
SwitchState = Literal["COMMITTED", "ABORTED", "RESERVED", "RECEIVED"]


class TransferParty(BaseModel):
    """`from` / `to` of a transfer request: an id plus optional names, kept as sent."""

    model_config = ConfigDict(extra="allow")

    id_type: PartyIdType = Field(alias="idType")
    id_value: str = Field(alias="idValue", min_length=1, max_length=128)


class TransferRequest(BaseModel):
    """`POST /transfers` body (SDK outbound API `transferRequest`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    home_transaction_id: str = Field(alias="homeTransactionId", min_length=1)
    from_party: TransferParty = Field(alias="from")
    to_party: TransferParty = Field(alias="to")
    amount_type: Literal["SEND", "RECEIVE"] = Field(alias="amountType")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount: str = Field(pattern=AMOUNT_PATTERN)
    transaction_type: Literal["TRANSFER", "DEPOSIT", "WITHDRAWAL", "PAYMENT", "REFUND"] = Field(alias="transactionType")


class TransferContinuation(BaseModel):
    """`PUT /transfers/{id}` body: exactly one of `acceptParty` (only `true` allowed by 18.0.2) or `acceptQuote`."""

    model_config = ConfigDict(extra="forbid")

    accept_party: StrictBool | None = Field(default=None, alias="acceptParty")
    accept_quote: StrictBool | None = Field(default=None, alias="acceptQuote")


class FaultSpec(BaseModel):
    """Faults for every transfer of one payer `homeTransactionId`; all optional, read at request time.

    `moneyStepAnswer`: normal | timeout (504) | hang | aborted_200 (200 ABORTED, no fulfil) | fulfil_aborted
    (200 COMPLETED, fulfil.body.transferState ABORTED) | no_cached_data (500) | error_callback (500 5105 while the
    switch COMMITTED). `autoAccept`: none | party | quotes | both (AUTO_ACCEPT_PARTY / AUTO_ACCEPT_QUOTES).
    `fulfilment`: valid | wrong (random) | other_transfer | missing, in the PUT and GET answers.
    `notFoundAnswers`: the first N GETs answer 3208. `prepareArrivesAfterS`: the switch records the prepare only
    after that many seconds (GETs meanwhile answer 3208). `partyLookupDelayS` / `acceptPartyDelayS`: the SDK holds
    `POST /transfers` / the `acceptParty` PUT open that long before it does anything else (a slow party lookup or
    quote); it goes on after the caller has gone away, as the SDK does. Each such request is counted as it
    arrives, before the delay (`GET /_sim/requests/{homeTransactionId}`), so a test can act while it is in flight.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    money_step_delay_s: float = Field(default=0.0, alias="moneyStepDelayS", ge=0, le=3600)
    party_lookup_delay_s: float = Field(default=0.0, alias="partyLookupDelayS", ge=0, le=3600)
    accept_party_delay_s: float = Field(default=0.0, alias="acceptPartyDelayS", ge=0, le=3600)
    money_step_answer: Literal[
        "normal", "timeout", "hang", "aborted_200", "fulfil_aborted", "no_cached_data", "error_callback"
    ] = Field(default="normal", alias="moneyStepAnswer")
    switch_outcome: Literal["COMMITTED", "ABORTED", "RESERVED"] | None = Field(default=None, alias="switchOutcome")
    prepare_lost: bool = Field(default=False, alias="prepareLost")
    get_answer: Literal["normal", "timeout"] = Field(default="normal", alias="getAnswer")
    quote_fee: Decimal | None = Field(default=None, alias="quoteFee")
    quote_commission: Decimal | None = Field(default=None, alias="quoteCommission")
    quote_expires_in_s: float | None = Field(default=None, alias="quoteExpiresInS", ge=-_YEAR_S, le=_YEAR_S)
    quote_transfer_amount_delta: Decimal | None = Field(default=None, alias="quoteTransferAmountDelta")
    prepare_expires_in_s: float | None = Field(default=None, alias="prepareExpiresInS", ge=-_YEAR_S, le=_YEAR_S)
    auto_accept: AutoAccept | None = Field(default=None, alias="autoAccept")  # None: the simulator's --auto-accept
    fulfilment: Literal["valid", "wrong", "other_transfer", "missing"] = Field(default="valid", alias="fulfilment")
    not_found_answers: int = Field(default=0, alias="notFoundAnswers", ge=0, le=1000)
    prepare_arrives_after_s: float | None = Field(default=None, alias="prepareArrivesAfterS", ge=0, le=3600)


class SwitchStateUpdate(BaseModel):
    """`PUT /_sim/switch/{transferId}`: what the switch says about a transfer from now on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    transfer_state: SwitchState = Field(alias="transferState")
