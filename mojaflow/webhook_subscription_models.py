"""Webhook subscriptions on the wire: what a client sends (`SubscriptionCreate`, `SubscriptionUpdate`) and what it
reads back (`SubscriptionView`), camelCase like the rest of our client API.

`auth` is exactly one scheme, chosen by `type`: `api_keys` (1–5 header name/value pairs), `basic` (username and
password) or `oauth2_client_credentials` (client id and secret, token URL, scope). Secrets (header values, the
password, the client secret) are write-only: held as `SecretStr` (never printed), never answered (`***`), never
put in an error message. Header names and the other public fields are shown back as given.

The URL rules here are only its shape; whether its host is safe to call (SSRF) is `mojaflow.url_guard.check_url`,
asked by the API before anything is stored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, StrictBool, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from mojaflow.models import CamelModel, TransferState
from mojaflow.webhook_models import EVENT_TYPE

__all__ = [
    "MASK",
    "ApiKeysAuth",
    "ApiKeysAuthView",
    "BasicAuth",
    "BasicAuthView",
    "OAuth2ClientCredentialsAuth",
    "OAuth2ClientCredentialsAuthView",
    "SigningSecretRotated",
    "SubscriptionAuth",
    "SubscriptionAuthView",
    "SubscriptionCreate",
    "SubscriptionCreated",
    "SubscriptionUpdate",
    "SubscriptionView",
    "reserved_header_reason",
]

MASK: Literal["***"] = "***"
MAX_API_KEY_HEADERS = 5  # the contract: up to 5 API-key headers

# RFC 9110 §5.1: a field name is a token; tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
# "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
# RFC 9110 §5.5 field value, restricted to visible ASCII and inner spaces/tabs (no obs-text, no CR/LF/NUL)
_FIELD_VALUE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?$")
_VISIBLE = re.compile(r"^[\x20-\x7e]+$")  # RFC 6749 VSCHAR: client_id, client_secret
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$")  # RFC 6749 §3.3
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Names a client's API-key header may not take, compared lower-case with `-` and `_` alike (CGI-style receivers
# and some proxies map both to one variable): the headers every delivery sets itself, and HTTP's own framing.
_OURS = (
    "client_key", "product", "payment_channel", "idempotent_request_key", "timestamp",  # Money Movement
    "webhook-id", "webhook-timestamp", "webhook-signature",  # Standard Webhooks
    "authorization", "content-type", "host",
)  # fmt: skip
_HTTP = (
    "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect",
    "proxy-authorization", "proxy-connection", "cookie",
)  # fmt: skip


def _normal(name: str) -> str:
    return name.lower().replace("-", "_")


_RESERVED = {_normal(name): name for name in _OURS} | {_normal(name): name for name in _HTTP}


def reserved_header_reason(name: str) -> str | None:
    """Why an API-key header may not be called `name`, or None if it may."""
    clash = _RESERVED.get(_normal(name))
    if clash is None:
        return None
    if clash in _HTTP:
        return f"header {name!r} is HTTP's own (as {clash!r}): choose another name"
    return f"header {name!r} is one every delivery sets itself (as {clash!r}): choose another name"


def _secret_rule(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    """A secret's syntax check whose message says the rule, never the value."""

    def check(value: SecretStr) -> SecretStr:
        if not pattern.match(value.get_secret_value()):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _web_url(value: str) -> str:
    """An absolute http(s) URL with a host; nothing else is checked here (the SSRF guard decides the rest)."""
    if _CONTROL.search(value) or " " in value:
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("https", "http") or not parts.netloc:
        raise ValueError("must be an absolute https URL, e.g. https://receiver.example/hooks")
    if parts.fragment:
        raise ValueError("must not have a fragment (#...)")
    return value


WebUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_web_url)]
HeaderValue = Annotated[
    SecretStr,
    Field(min_length=1, max_length=4096),
    _secret_rule(_FIELD_VALUE, "must be visible ASCII (inner spaces allowed), without line breaks"),
]


# -- the three schemes, as sent (with their secrets) ---------------------------------------------------------


class ApiKeysAuth(CamelModel):
    """Up to 5 custom headers sent as configured with every delivery; the receiver compares them."""

    type: Literal["api_keys"]
    headers: dict[str, HeaderValue] = Field(min_length=1, max_length=MAX_API_KEY_HEADERS)

    @field_validator("headers")
    @classmethod
    def _names(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        seen: set[str] = set()
        for name in headers:
            if not _TOKEN.match(name):
                raise ValueError(
                    f"header name {name[:64]!r} is not an RFC 9110 token (letters, digits, !#$%&'*+-.^_`|~)"
                )
            reason = reserved_header_reason(name)
            if reason:
                raise ValueError(reason)
            if name.lower() in seen:
                raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
            seen.add(name.lower())
        return headers


class BasicAuth(CamelModel):
    """`Authorization: Basic base64(username:password)` (RFC 7617)."""

    type: Literal["basic"]
    username: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_control)]
    password: Annotated[
        SecretStr, Field(min_length=1, max_length=1024), _secret_rule(re.compile(r"^[^\x00-\x1f\x7f]+$"),
                                                                      "must not contain control characters")
    ]  # fmt: skip

    @field_validator("username")
    @classmethod
    def _no_colon(cls, username: str) -> str:
        if ":" in username:
            raise ValueError("must not contain ':' (RFC 7617: it separates username and password)")
        return username


class OAuth2ClientCredentialsAuth(CamelModel):
    """A bearer token from the client's token endpoint, grant `client_credentials` (RFC 6749 §4.4)."""

    type: Literal["oauth2_client_credentials"]
    client_id: Annotated[str, Field(min_length=1, max_length=256, pattern=_VISIBLE.pattern)]
    client_secret: Annotated[
        SecretStr, Field(min_length=1, max_length=1024), _secret_rule(_VISIBLE, "must be visible ASCII (RFC 6749)")
    ]
    token_url: WebUrl
    scope: Annotated[str, Field(min_length=1, max_length=1024, pattern=_SCOPE.pattern)] | None = None


SubscriptionAuth = Annotated[ApiKeysAuth | BasicAuth | OAuth2ClientCredentialsAuth, Field(discriminator="type")]


# -- the same, as answered (secrets masked) ------------------------------------------------------------------


class ApiKeysAuthView(CamelModel):
    type: Literal["api_keys"] = "api_keys"
    headers: dict[str, Literal["***"]] = Field(description="The header names; their values are never shown")


class BasicAuthView(CamelModel):
    type: Literal["basic"] = "basic"
    username: str
    password: Literal["***"] = MASK


class OAuth2ClientCredentialsAuthView(CamelModel):
    type: Literal["oauth2_client_credentials"] = "oauth2_client_credentials"
    client_id: str
    client_secret: Literal["***"] = MASK
    token_url: str
    scope: str | None = None


SubscriptionAuthView = Annotated[
    ApiKeysAuthView | BasicAuthView | OAuth2ClientCredentialsAuthView, Field(discriminator="type")
]

EventTypes = Annotated[
    list[Literal["moneymovementservices.payment.status_updated"]],
    Field(min_length=1, max_length=1, description=f"The one event type there is: `{EVENT_TYPE}`"),
]
States = Annotated[
    list[TransferState],
    Field(min_length=1, max_length=len(TransferState), description="Only events entering these states"),
]


def _unique(states: list[TransferState] | None) -> None:
    if states is not None and len(set(states)) != len(states):
        error = PydanticCustomError("duplicate", "each state at most once")
        raise ValidationError.from_exception_data("states", [InitErrorDetails(type=error, loc=("states",), input=None)])


class SubscriptionCreate(CamelModel):
    """`POST /webhooks/subscriptions`."""

    url: WebUrl
    event_types: EventTypes
    states: States | None = Field(default=None, description="Omitted: every state change")
    auth: SubscriptionAuth
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _distinct_states(self) -> Self:
        _unique(self.states)
        return self


class SubscriptionUpdate(CamelModel):
    """`PATCH /webhooks/subscriptions/{id}`: the fields sent replace the stored ones; `states: null` removes the
    filter. A new `auth` is given whole, secrets included. `enabled: false` cancels the pending deliveries."""

    url: WebUrl | None = None
    event_types: EventTypes | None = None
    states: States | None = None
    auth: SubscriptionAuth | None = None
    enabled: StrictBool | None = None

    @model_validator(mode="after")
    def _not_null_but_states(self) -> Self:
        nulls = [
            InitErrorDetails(type=PydanticCustomError("null", "cannot be null: omit it to keep it"), loc=(alias,),
                             input=None)
            for name, alias in (("url", "url"), ("event_types", "eventTypes"), ("auth", "auth"), ("enabled", "enabled"))
            if name in self.model_fields_set and getattr(self, name) is None
        ]  # fmt: skip
        if nulls:
            raise ValidationError.from_exception_data(type(self).__name__, nulls)
        _unique(self.states)
        return self


class SubscriptionView(CamelModel):
    """A subscription as answered: its secrets masked; its signing secret shown only once, on creation and on
    rotation."""

    subscription_id: str
    url: str
    event_types: list[str]
    states: list[TransferState] | None = None
    auth: SubscriptionAuthView
    enabled: bool
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionView):
    signing_secret: str = Field(
        description="The Standard Webhooks signing secret (`whsec_…`): shown this once; verify `webhook-signature` "
        "with it"
    )


class SigningSecretRotated(CamelModel):
    subscription_id: str
    signing_secret: str = Field(description="The new `whsec_…` secret: shown this once")
    previous_secrets_expire_at: datetime | None = Field(
        default=None, description="Until then deliveries are also signed with the previous secret(s)"
    )
