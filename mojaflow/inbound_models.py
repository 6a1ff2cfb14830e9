"""Data contracts of inbound transfers (mojaloop → CBS): the SDK's backend API bodies, the quote we save,
the workflow's input and signals, and how CBS refusals map to FSPIOP codes.

The backend API's wire bodies come from the SDK (`sdk-scheme-adapter-backend-v2_1_0` spec): they ignore fields
we do not use (`extensionList`, `ilpPacket`, `geoCode`, ...) and validate the ones we do.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mojaflow.models import Direction, PartyView, QuoteView, TransferState, TransferView

__all__ = [
    "InboundCheckpoint",
    "BackendParty",
    "CbsRefusal",
    "FinalNotification",
    "InboundNotification",
    "InboundPolicy",
    "InboundQuote",
    "InboundTransferInput",
    "NotificationBody",
    "QuoteRequestBody",
    "QuoteTerms",
    "TransferBody",
    "cbs_refusal",
    "mojaloop_amount",
    "party_key",
]

# Mojaloop's `money` pattern: no leading zeros, at most 4 decimals, no trailing zero after the point.
_MONEY = r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$"
# Mojaloop ids (transferId, quoteId, transactionId): lower-case UUID or upper-case ULID.
_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$|^[0-9A-HJKMNP-TV-Z]{26}$"


def _positive(value: str) -> str:
    if Decimal(value) <= 0:
        raise ValueError("must be greater than zero")
    return value


def mojaloop_amount(value: Decimal) -> str:
    """Mojaloop's amount format: `Decimal("25.00")` → "25", no exponent."""
    return format(value.normalize(), "f") if value else "0"


Money = Annotated[str, Field(pattern=_MONEY)]
PositiveMoney = Annotated[str, Field(pattern=_MONEY), AfterValidator(_positive)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
MojaloopId = Annotated[str, Field(pattern=_ID)]
IdType = Annotated[str, Field(pattern=r"^[A-Z_]{1,32}$")]
# A party id: no "/" nor dot-only values, so it is safe as a path segment of the CBS contract.
IdValue = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@+:-]*[A-Za-z0-9_@+:-][A-Za-z0-9_.@+:-]*$")
]


class _Wire(BaseModel):
    """A body the SDK sends: camelCase, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class BackendParty(_Wire):
    """`transferParty`: who pays or is paid."""

    id_type: IdType
    id_value: IdValue
    id_sub_value: IdValue | None = None
    fsp_id: str | None = Field(default=None, max_length=32)
    display_name: str | None = Field(default=None, max_length=128)
    first_name: str | None = Field(default=None, max_length=128)
    middle_name: str | None = Field(default=None, max_length=128)
    last_name: str | None = Field(default=None, max_length=128)

    def name(self) -> str | None:
        names = [n for n in (self.first_name, self.middle_name, self.last_name) if n]
        return self.display_name or " ".join(names) or None


class QuoteRequestBody(_Wire):
    """`POST /quoterequests`."""

    quote_id: MojaloopId
    transaction_id: MojaloopId
    to: BackendParty
    from_party: BackendParty = Field(alias="from")
    amount_type: Literal["SEND", "RECEIVE"]
    amount: PositiveMoney
    currency: Currency
    transaction_type: Annotated[str, Field(min_length=1, max_length=32)]
    initiator: Literal["PAYER", "PAYEE"]
    initiator_type: Literal["CONSUMER", "AGENT", "BUSINESS", "DEVICE"]
    expiration: datetime | None = None
    note: str | None = Field(default=None, max_length=128)


class QuoteTerms(_Wire):
    """`quoteResponse` as the SDK repeats it in `POST /transfers`."""

    quote_id: MojaloopId
    transaction_id: MojaloopId | None = None
    transfer_amount: PositiveMoney
    transfer_amount_currency: Currency
    payee_receive_amount: Money | None = None
    expiration: datetime | None = None


class TransferBody(_Wire):
    """`POST /transfers`: the prepare the switch forwarded, with the quote it rests on."""

    transfer_id: MojaloopId
    quote: QuoteTerms
    to: BackendParty
    from_party: BackendParty = Field(alias="from")
    amount_type: Literal["SEND", "RECEIVE"]
    amount: PositiveMoney
    currency: Currency
    transaction_type: Annotated[str, Field(min_length=1, max_length=32)]
    ilp_packet: dict[str, Any] | None = None
    note: str | None = Field(default=None, max_length=128)


class FinalNotification(_Wire):
    transfer_state: Literal["RECEIVED", "RESERVED", "COMMITTED", "ABORTED"]
    completed_timestamp: str | None = None


class NotificationBody(_Wire):
    """`PUT /transfers/{transferId}`: the SDK's record of the transfer, with the switch's final word."""

    transfer_id: MojaloopId | None = None
    current_state: str | None = Field(default=None, max_length=32)
    final_notification: FinalNotification | None = None


class InboundNotification(BaseModel):
    """Signal to `InboundTransferWorkflow`: COMMITTED/ABORTED decide; anything else means "ask the switch"."""

    transfer_state: str | None = None
    current_state: str | None = None


class InboundQuote(BaseModel):
    """The quote we answered, saved by `quoteId` (`Database.save_quote`) and checked by the transfer."""

    quote_id: str
    transaction_id: str
    amount_type: str
    currency: str
    transfer_amount: str
    payee_receive_amount: str
    fee: str
    commission: str
    expiration: datetime
    account_id: str
    payee_key: str  # `party_key` of the payee: matches the transfer without keeping the party id in clear
    payee_name: str | None = None

    def view(self) -> QuoteView:
        return QuoteView(
            quote_id=self.quote_id,
            currency=self.currency,
            transfer_amount=self.transfer_amount,
            payee_receive_amount=self.payee_receive_amount,
            fees=self.fee,
            commission=self.commission,
            expiration=self.expiration,
        )


class InboundPolicy(BaseModel):
    """Settings an inbound transfer runs under, fixed when it starts (workflows never read settings)."""

    transfer_expiry_s: float
    reconcile_grace_s: float
    reconcile_max_interval_s: float
    reconcile_checks_per_run: int = 500
    # Confirm a COMMITTED notification with the switch before the credit is committed. False when absent: a
    # workflow started before this setting existed replays as it ran (its input has no such field).
    confirm_commit: bool = False


class InboundCheckpoint(BaseModel):
    """Where a long reconciliation stands when it goes on in a new run (continue-as-new)."""

    view: TransferView
    revision: int
    reservation_id: str
    deadline: datetime
    interval_s: float
    trust_notifications: bool = True  # False once a COMMITTED notification was contradicted: the switch decides


class InboundTransferInput(BaseModel):
    """The one input of `InboundTransferWorkflow` (encrypted by the codec: it names the payer)."""

    transfer_id: str
    client_key: str
    product: str | None = None  # for its webhook events: MOJAFLOW_INBOUND_PRODUCT / _PAYMENT_CHANNEL when started
    payment_channel: str | None = None
    amount_type: str
    amount: str
    currency: str
    quote_id: str
    quoted_transfer_amount: str
    quoted_currency: str
    quoted_expiration: datetime | None = None
    payee_key: str
    payer: PartyView
    payee_fsp_id: str | None = None
    saved_quote: InboundQuote | None = None
    policy: InboundPolicy
    received_at: datetime
    resume: InboundCheckpoint | None = None

    def initial_view(self) -> TransferView:
        """The resource as it stands before the workflow's first step."""
        quote = self.saved_quote
        view = TransferView(
            transfer_id=self.transfer_id,
            direction=Direction.INBOUND,
            current_state=TransferState.RECEIVED,
            amount_type=self.amount_type,
            currency=self.currency,
            amount=self.amount,
            payer=self.payer,
            payee=PartyView(name=quote.payee_name if quote else None, fsp_id=self.payee_fsp_id),
            quote=quote.view() if quote else None,
            sdk_transfer_id=self.transfer_id,
        )
        view.timestamps.received_at = self.received_at
        return view


def party_key(hash_key: bytes, id_type: str, id_value: str, id_sub_value: str | None) -> str:
    """A one-way key of a party id, so quote and transfer can be matched without storing the id. Keyed (HMAC):
    an unkeyed hash of an MSISDN is reversed by trying every number."""
    message = f"{id_type}\x1f{id_value}\x1f{id_sub_value or ''}".encode()
    return hmac.new(hash_key, message, hashlib.sha256).hexdigest()


class CbsRefusal(BaseModel):
    """How a CBS refusal is answered to the SDK: HTTP status, FSPIOP code, a message without personal data."""

    http_status: int
    fspiop_code: str
    message: str


_REFUSALS: dict[str, CbsRefusal] = {
    "party_not_found": CbsRefusal(http_status=404, fspiop_code="3204", message="party not found"),
    "account_not_found": CbsRefusal(http_status=404, fspiop_code="3204", message="party not found"),
    "unsupported_id_type": CbsRefusal(http_status=400, fspiop_code="3100", message="idType: not served by this FSP"),
    "account_blocked": CbsRefusal(http_status=400, fspiop_code="5400", message="payee account is blocked"),
    "account_closed": CbsRefusal(http_status=400, fspiop_code="5400", message="payee account is closed"),
    "unsupported_currency": CbsRefusal(http_status=400, fspiop_code="5106", message="payee unsupported currency"),
    "limit_exceeded": CbsRefusal(http_status=400, fspiop_code="5200", message="payee limit exceeded"),
}


def cbs_refusal(code: str) -> CbsRefusal:
    """The CBS contract's refusal code → what we answer; anything unlisted is a generic payee error (5100)."""
    return _REFUSALS.get(code) or CbsRefusal(
        http_status=400, fspiop_code="5100", message=f"payee FSP refused ({code[:40]})"
    )
