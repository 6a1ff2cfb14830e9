"""What goes on a webhook POST besides the body: the Standard Webhooks signature, the Money Movement headers, the
subscriber's auth scheme; and the OAuth2 access tokens (grant `client_credentials`) that scheme may need.

Signature (standardwebhooks.com): `webhook-id` (the event id), `webhook-timestamp` (Unix seconds, the wall clock:
receivers reject stale ones), `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
one per signing secret (`whsec_` + base64 of the key), space-separated: during a rotation both verify.

Tokens are cached per subscription until shortly before `expires_in`, in this process and, sealed, in our database
(shared by every worker process); a 401 from the receiver drops the token and the caller fetches a new one once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from mojaflow.database import Database
from mojaflow.url_guard import UnsafeUrl
from mojaflow.webhook_deliveries import PendingDelivery, forget_oauth_token, load_oauth_token, save_oauth_token
from mojaflow.webhook_subscription_models import ApiKeysAuth, BasicAuth, OAuth2ClientCredentialsAuth

__all__ = ["OAuthTokens", "TokenUnavailable", "auth_headers", "delivery_headers", "secret_values", "sign"]

log = logging.getLogger("mojaflow.webhooks")

SIGNING_PREFIX = "whsec_"
DEFAULT_TOKEN_LIFETIME_S = 300  # a token answered without expires_in (RFC 6749 only recommends it)
MAX_EXPIRY_MARGIN_S = 60  # a token is dropped this long (at most a tenth of its life) before it expires
Auth = ApiKeysAuth | BasicAuth | OAuth2ClientCredentialsAuth
_ACCEPT_JSON = {"accept": "application/json"}


def sign(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64>` per secret, space-separated."""
    content = f"{message_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix(SIGNING_PREFIX))
        digest = hmac.new(key, content, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)


def delivery_headers(
    delivery: PendingDelivery, *, signing_secrets: Iterable[str], at: datetime, sent_at: datetime
) -> dict[str, str]:
    """The headers of every POST but auth: the Money Movement ones (`timestamp` is the attempt's time, from the
    workflow) and the signature (its timestamp is the wall clock of the send, which receivers check for replays)."""
    unix = int(sent_at.timestamp())
    headers = {
        "content-type": "application/json",
        "client_key": delivery.client_key,
        "idempotent_request_key": delivery.event_id,
        "timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(unix),
        "webhook-signature": sign(signing_secrets, delivery.event_id, unix, delivery.body),
    }
    if delivery.product:
        headers["product"] = delivery.product
    if delivery.payment_channel:
        headers["payment_channel"] = delivery.payment_channel
    return headers


def auth_headers(auth: Auth, token: str | None = None) -> dict[str, str]:
    """The scheme's headers: the API-key headers as configured, Basic, or the bearer `token` (OAuth2)."""
    if isinstance(auth, ApiKeysAuth):
        return {name: value.get_secret_value() for name, value in auth.headers.items()}
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
        return {"authorization": "Basic " + base64.b64encode(pair).decode()}
    if token is None:
        raise ValueError("an OAuth2 subscription needs its token")
    return {"authorization": f"Bearer {token}"}


def secret_values(auth: Auth, token: str | None = None) -> list[str]:
    """Every secret a request of this scheme carries, in the forms it travels in: never to be recorded."""
    if isinstance(auth, ApiKeysAuth):
        values = [value.get_secret_value() for value in auth.headers.values()]
    elif isinstance(auth, BasicAuth):
        values = [auth.password.get_secret_value(), auth_headers(auth)["authorization"].removeprefix("Basic ")]
    else:
        secret = auth.client_secret.get_secret_value()
        values = [secret, quote(secret, safe=""), token or ""]
    return [value for value in values if value]


class TokenUnavailable(Exception):
    """The token endpoint gave no token (refused, unreachable, or an answer that is not a token): the attempt
    fails with this `error_class`."""

    def __init__(self, error_class: str, status_code: int | None = None) -> None:
        super().__init__(error_class)
        self.error_class = error_class
        self.status_code = status_code


@dataclass(frozen=True)
class _Token:
    value: str
    use_until: datetime


class OAuthTokens:
    """Access tokens per subscription: this process's memory, then the database, then the token endpoint (one
    fetch at a time per subscription in this process, so a burst of deliveries asks once)."""

    def __init__(self, http: httpx.AsyncClient, database: Database) -> None:
        self._http = http
        self._db = database
        self._memory: dict[tuple[str, str, str], _Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._form_only: set[tuple[str, str]] = set()  # token endpoints that refused client auth by Basic

    async def token(self, subscription_id: str, auth: OAuth2ClientCredentialsAuth) -> str:
        key = (subscription_id, auth.client_id, auth.token_url)
        lock = self._locks.setdefault(subscription_id, asyncio.Lock())
        async with lock:
            now = datetime.now(UTC)
            cached = self._memory.get(key)
            if cached is not None and cached.use_until > now:
                return cached.value
            stored = await load_oauth_token(self._db, subscription_id, now=now)
            if stored is not None:
                self._memory[key] = _Token(*stored)
                return stored[0]
            token = await self._fetch(auth, now)
            self._memory[key] = token
            await save_oauth_token(self._db, subscription_id, token.value, token.use_until)
            return token.value

    async def refused(self, subscription_id: str, auth: OAuth2ClientCredentialsAuth, token: str) -> None:
        """The receiver answered 401 to `token`: forget it here and in the database (unless replaced meanwhile)."""
        key = (subscription_id, auth.client_id, auth.token_url)
        cached = self._memory.get(key)
        if cached is not None and cached.value == token:
            del self._memory[key]
        await forget_oauth_token(self._db, subscription_id, token)

    async def _fetch(self, auth: OAuth2ClientCredentialsAuth, now: datetime) -> _Token:
        form = {"grant_type": "client_credentials"}
        if auth.scope:
            form["scope"] = auth.scope
        endpoint = (auth.client_id, auth.token_url)
        response = None
        if endpoint not in self._form_only:  # RFC 6749 2.3.1: Basic with the form-encoded id and secret
            basic = httpx.BasicAuth(
                quote(auth.client_id, safe=""), quote(auth.client_secret.get_secret_value(), safe="")
            )
            response = await self._post(auth.token_url, data=form, auth=basic)
            if response.status_code in (400, 401) and _refuses_client(response):
                self._form_only.add(endpoint)
                response = None
        if response is None:  # the fallback the RFC allows: the credentials as form fields
            fields = {**form, "client_id": auth.client_id, "client_secret": auth.client_secret.get_secret_value()}
            response = await self._post(auth.token_url, data=fields, auth=None)
        if response.status_code != 200:
            raise TokenUnavailable("oauth_token_refused", response.status_code)
        return _parse_token(response, now)

    async def _post(self, url: str, *, data: dict[str, str], auth: httpx.Auth | None) -> httpx.Response:
        try:
            if auth is None:
                return await self._http.post(url, data=data, headers=_ACCEPT_JSON)
            return await self._http.post(url, data=data, auth=auth, headers=_ACCEPT_JSON)
        except httpx.TimeoutException:
            raise TokenUnavailable("oauth_token_timeout") from None
        except httpx.HTTPError:
            raise TokenUnavailable("oauth_token_unreachable") from None
        except UnsafeUrl:
            raise TokenUnavailable("oauth_token_url_unsafe") from None


def _refuses_client(response: httpx.Response) -> bool:
    """A token endpoint's answer that means "not this way of client authentication" (RFC 6749 5.2)."""
    if response.status_code == 401:
        return True
    try:
        return response.json().get("error") in ("invalid_client", "unauthorized_client")
    except (ValueError, AttributeError):
        return False


def _parse_token(response: httpx.Response, now: datetime) -> _Token:
    try:
        answer = response.json()
        token = answer["access_token"]
        kind = str(answer.get("token_type", "bearer"))
        lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise TokenUnavailable("oauth_token_malformed", response.status_code) from None
    if not isinstance(token, str) or not token or kind.lower() != "bearer" or lifetime <= 0:
        raise TokenUnavailable("oauth_token_malformed", response.status_code)
    margin = min(MAX_EXPIRY_MARGIN_S, lifetime / 10)
    return _Token(token, now + timedelta(seconds=lifetime - margin))
