"""Data contracts shared by the API, the workflows and the database: the transfer resource and its inputs.

Wire names are the SDK's camelCase vocabulary (`homeTransactionId`, `currentState`, `from`/`to`); Python names
are snake_case. Amounts are decimal strings, never floats.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Self

import iso4217
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "AcceptanceDecision",
    "Amount",
    "CamelModel",
    "DecisionInput",
    "DecisionRecord",
    "Direction",
    "FINAL_STATES",
    "FIRST_REVISION",
    "OutboundTransferInput",
    "PartyIdType",
    "PartyView",
    "Payee",
    "Payer",
    "PhaseTimestamps",
    "QuoteView",
    "ReconciliationCheckpoint",
    "REPORTABLE_STATES",
    "Resolution",
    "TransferError",
    "TransferOrder",
    "TransferPolicy",
    "TransferRecord",
    "TransferRequest",
    "TransferState",
    "TransferView",
    "WaitRequest",
    "check_amount_precision",
    "minor_unit",
    "normalise_amount",
]

# ASCII digits only: `\d` and `Decimal` also take other scripts' digits ("١٢" would be 12).
_AMOUNT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,4})?", re.ASCII)


def normalise_amount(value: str) -> str:
    """Mojaloop's amount format: no exponent, no trailing zeros ("150.00" → "150"), positive."""
    if not _AMOUNT.fullmatch(value):
        raise ValueError('must be a positive decimal string of ASCII digits with at most 4 decimals, e.g. "150.25"')
    amount = Decimal(value)
    if amount <= 0:
        raise ValueError("must be greater than zero")
    text = format(amount.normalize(), "f")
    return text


def minor_unit(currency: str) -> int | None:
    """The ISO 4217 exponent (decimals) of a currency; None if it has none (gold, SDR, test codes)."""
    return iso4217.Currency(currency).exponent


def _iso_currency(value: str) -> str:
    try:
        exponent = minor_unit(value)
    except ValueError:
        raise ValueError('must be an active ISO 4217 currency code, e.g. "USD"') from None
    if exponent is None:
        raise ValueError("must be an ISO 4217 currency with a minor unit (not a metal, fund or test code)")
    return value


def _no_control_characters(value: str) -> str:
    """No control (Cc) or format (Cf: bidi overrides U+202A–U+202E, isolates U+2066–U+2069, ...) characters."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf"):
            raise ValueError(f"must not contain control or format characters (found U+{ord(char):04X})")
    return value


Amount = Annotated[str, AfterValidator(normalise_amount)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code"), AfterValidator(_iso_currency)]
PartyIdentifier = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+:-]+$"),
    AfterValidator(_no_control_characters),
]
Text = Annotated[str, AfterValidator(_no_control_characters)]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PartyIdType(StrEnum):
    MSISDN = "MSISDN"
    EMAIL = "EMAIL"
    PERSONAL_ID = "PERSONAL_ID"
    BUSINESS = "BUSINESS"
    DEVICE = "DEVICE"
    ACCOUNT_ID = "ACCOUNT_ID"
    IBAN = "IBAN"
    ALIAS = "ALIAS"


class Direction(StrEnum):
    OUTBOUND = "OUTBOUND"
    INBOUND = "INBOUND"


class TransferState(StrEnum):
    """The SDK's states plus our documented in-progress ones (README has the table)."""

    RECEIVED = "RECEIVED"
    RESOLVING_PARTY = "RESOLVING_PARTY"
    WAITING_FOR_PARTY_ACCEPTANCE = "WAITING_FOR_PARTY_ACCEPTANCE"
    REQUESTING_QUOTE = "REQUESTING_QUOTE"
    WAITING_FOR_QUOTE_ACCEPTANCE = "WAITING_FOR_QUOTE_ACCEPTANCE"
    HOLDING_FUNDS = "HOLDING_FUNDS"
    TRANSFERRING = "TRANSFERRING"
    RECONCILING = "RECONCILING"
    SETTLING = "SETTLING"  # the switch committed; the CBS has not yet taken the debit (or credit)
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"
    ERROR_OCCURRED = "ERROR_OCCURRED"
    # inbound (payee side)
    RESERVED = "RESERVED"
    COMMITTED = "COMMITTED"


FINAL_STATES = frozenset(
    {TransferState.COMPLETED, TransferState.ABORTED, TransferState.ERROR_OCCURRED, TransferState.COMMITTED}
)
# States worth answering a waiting caller with: the CBS must act, or nothing will change any more.
REPORTABLE_STATES = FINAL_STATES | {
    TransferState.WAITING_FOR_PARTY_ACCEPTANCE,
    TransferState.WAITING_FOR_QUOTE_ACCEPTANCE,
}


class Payer(CamelModel):
    id_type: PartyIdType
    id_value: PartyIdentifier
    id_sub_value: PartyIdentifier | None = None
    display_name: Text | None = Field(default=None, max_length=128)
    first_name: Text | None = Field(default=None, max_length=128)
    middle_name: Text | None = Field(default=None, max_length=128)
    last_name: Text | None = Field(default=None, max_length=128)
    date_of_birth: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")


class Payee(CamelModel):
    id_type: PartyIdType
    id_value: PartyIdentifier
    id_sub_value: PartyIdentifier | None = None


def check_amount_precision(model: str, field: str, amount: str, currency: str) -> None:
    """No more significant decimals than the currency's minor unit ("150.00" UGX is 150; "150.5" is not).
    Raises a `ValidationError` naming `field` of `model`; `amount` is normalised already."""
    exponent = minor_unit(currency) or 0
    decimals = max(0, -int(Decimal(amount).as_tuple().exponent))
    if decimals > exponent:
        error = PydanticCustomError(
            "amount_precision",
            "{currency} has {exponent} decimals (ISO 4217): amount {amount} has {decimals}",
            {"currency": currency, "exponent": exponent, "amount": amount, "decimals": decimals},
        )
        raise ValidationError.from_exception_data(model, [InitErrorDetails(type=error, loc=(field,), input=amount)])


class TransferOrder(BaseModel):
    """What to pay, whichever front door it came through (`TransferRequest` on `/transfers`, the Send Money API's
    bodies): validated there, carried by the workflow, turned into the SDK's request by
    `activities.payment_manager`. Amounts are in Mojaloop's format already."""

    home_transaction_id: str
    payer: Payer
    payee: Payee
    amount_type: Literal["SEND", "RECEIVE"]
    currency: str
    amount: str
    transaction_type: Literal["TRANSFER"] = "TRANSFER"
    note: str | None = None
    purpose_code: str | None = None  # Send Money's `purposeCode`: kept with the transfer; SDK 18.0.2 takes none


class TransferRequest(CamelModel):
    """`POST /transfers`: the SDK's outbound transfer request, plus optional acceptance overrides."""

    home_transaction_id: Text = Field(min_length=1, max_length=128)
    from_party: Payer = Field(alias="from")
    to_party: Payee = Field(alias="to")
    amount_type: Literal["SEND", "RECEIVE"]
    currency: Currency
    amount: Amount
    transaction_type: Literal["TRANSFER"]
    note: Text | None = Field(default=None, max_length=128)
    auto_accept_party: StrictBool | None = None
    auto_accept_quote: StrictBool | None = None

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> Self:
        check_amount_precision(type(self).__name__, "amount", self.amount, self.currency)
        return self

    def order(self) -> TransferOrder:
        return TransferOrder(
            home_transaction_id=self.home_transaction_id,
            payer=self.from_party,
            payee=self.to_party,
            amount_type=self.amount_type,
            currency=self.currency,
            amount=self.amount,
            transaction_type=self.transaction_type,
            note=self.note,
        )


class TransferPolicy(BaseModel):
    """The settings a transfer runs under, fixed when it starts (workflows must not read settings)."""

    auto_accept_party: bool
    auto_accept_quote: bool
    max_fee: Decimal | None = None
    acceptance_timeout_s: float
    transfer_expiry_s: float = 60.0
    reconcile_grace_s: float = 60.0
    reconcile_max_interval_s: float = 60.0
    reconcile_checks_per_run: int = 500
    require_fulfilment: bool = True  # a COMMITTED without a fulfilment proves nothing (unless configured)


class OutboundTransferInput(BaseModel):
    """The one input of `OutboundTransferWorkflow` (encrypted by the codec: it holds personal data)."""

    transfer_id: str
    client_key: str
    product: str | None = None
    payment_channel: str | None = None
    order: TransferOrder
    policy: TransferPolicy
    received_at: datetime
    resume: ReconciliationCheckpoint | None = None

    def initial_view(self) -> TransferView:
        """The resource as it stands before the workflow's first step."""
        order = self.order
        view = TransferView(
            transfer_id=self.transfer_id,
            direction=Direction.OUTBOUND,
            home_transaction_id=order.home_transaction_id,
            current_state=TransferState.RECEIVED,
            amount_type=order.amount_type,
            currency=order.currency,
            amount=order.amount,
        )
        view.timestamps.received_at = self.received_at
        return view


class ReconciliationCheckpoint(BaseModel):
    """Where a long reconciliation stands when it goes on in a new run (continue-as-new)."""

    view: TransferView
    revision: int
    hold_id: str | None  # None: the SDK ran on by itself before we held anything (sdk_misconfigured)
    give_up_not_found_at: datetime
    interval_s: float
    payer_account_id: str | None = None  # to hold and debit the payer if the switch turns out to have committed
    condition: str | None = None
    switch_saw_prepare: bool = False


class AcceptanceDecision(CamelModel):
    """`PUT /transfers/{id}`: exactly one of the two decisions, and how long to wait for the next state."""

    accept_party: StrictBool | None = None
    accept_quote: StrictBool | None = None
    wait_s: float = Field(default=0, ge=0, le=60)


class DecisionInput(AcceptanceDecision):
    """What the API hands the workflow's `accept_party` / `accept_quote` update: the decision and who took it,
    set from the caller's credential (never from the body: `AcceptanceDecision` refuses an `actor` field)."""

    actor: str | None = None


class WaitRequest(BaseModel):
    wait_s: float = Field(ge=0, le=60)
    leaving: TransferState | None = None  # wait past this state too (a decision's retry: the one it decided)


class PartyView(CamelModel):
    name: str | None = None
    fsp_id: str | None = None


class QuoteView(CamelModel):
    quote_id: str | None = None
    currency: str
    transfer_amount: str
    payee_receive_amount: str
    fees: str = "0"
    commission: str = "0"
    expiration: datetime | None = None
    condition: str | None = None  # the ILP condition: a COMMITTED counts only with a fulfilment that matches it


class TransferError(CamelModel):
    code: str
    message: str
    fspiop_error_code: str | None = None


class PhaseTimestamps(CamelModel):
    received_at: datetime | None = None
    party_resolved_at: datetime | None = None
    quote_received_at: datetime | None = None
    funds_held_at: datetime | None = None
    transfer_sent_at: datetime | None = None
    finished_at: datetime | None = None


class DecisionRecord(CamelModel):
    """One decision the CBS took with `PUT /transfers/{id}`, as the workflow recorded it when it applied it.

    `update_id` is the Temporal update's id, derived from the request's idempotency key: a retry of the same
    request finds here (or Temporal finds by that id) whether its decision was taken, whatever failed between.
    """

    state: TransferState  # the state that awaited the decision
    accepted: bool
    update_id: str
    decided_at: datetime
    actor: str | None = None  # who decided: `api_key:<key_id>`, a token's subject, `anonymous` (MOJAFLOW_AUTH=none)


class Resolution(CamelModel):
    """An operator's settlement of a transfer after checking with the hub (`mojaflow transfers resolve`): what the
    hub said, why, who, when, and the state it was taken in (RECONCILING / SETTLING while the workflow ran; a final
    ERROR_OCCURRED through `ResolutionWorkflow`)."""

    outcome: Literal["COMMITTED", "ABORTED"]
    reason: str
    actor: str  # `api_key:<key_id>` of an operator key
    resolved_at: datetime
    resolved_from: TransferState


class TransferView(CamelModel):
    """The transfer resource, as `GET /transfers/{transferId}` answers it."""

    transfer_id: str
    direction: Direction
    home_transaction_id: str | None = None
    current_state: TransferState
    amount_type: str | None = None
    currency: str
    amount: str
    payer: PartyView | None = None
    payee: PartyView | None = None
    quote: QuoteView | None = None
    sdk_transfer_id: str | None = None
    # The CBS's id of what it holds for this transfer: the payer's hold (outbound), the payee's credit reservation
    # (inbound); the bank's end-of-day reconciliation matches on it (`mojaflow transfers export`)
    hold_id: str | None = None
    last_error: TransferError | None = None
    timestamps: PhaseTimestamps = Field(default_factory=PhaseTimestamps)
    decisions: list[DecisionRecord] = Field(default_factory=list)  # the CBS's acceptances, in order
    resolution: Resolution | None = None  # an operator's, if any (README "Operations")


# The revision of a transfer's first saved state: an outbound transfer's RECEIVED is saved by the API at 0 before
# its workflow starts; an inbound one's by its workflow, at 1.
FIRST_REVISION = {Direction.OUTBOUND: 0, Direction.INBOUND: 1}


class TransferRecord(BaseModel):
    """One saved state of a transfer: the resource plus what we index it by, and what its webhook event needs.

    `revision` grows with every state change, so a late or retried save never overwrites a newer one. The fields
    after `client_key` have defaults: records in recorded histories (local activity inputs) still validate.
    """

    view: TransferView
    revision: int
    workflow_id: str
    client_key: str | None = None  # None: the bank's own (MOJAFLOW_DEFAULT_CLIENT_KEY)
    previous_state: TransferState | None = None  # the state saved before this one; None for the first
    product: str | None = None  # the Money Movement headers of the request that started it (inbound: settings)
    payment_channel: str | None = None

    @property
    def sequence(self) -> int:
        """The event's `sequence`: 1 for the transfer's first saved state, then one more per state saved."""
        return self.revision - FIRST_REVISION[self.view.direction] + 1
