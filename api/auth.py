"""Who is calling the client API: the `Caller` that `CallerDep` (api.dependencies) resolves from the credential.

The credential decides the `client_key`: a `client_key` header that disagrees is 403 `client_key_mismatch`; a
missing, unknown or revoked credential is 401 `unauthorized` with `WWW-Authenticate: Bearer`. A credential comes
as `Authorization: Bearer <credential>` or `X-API-Key: <credential>`; each `CredentialVerifier` says which
credentials it reads by their form: API keys (`mojaflow.api_keys`) and, when configured, OAuth2 bearer JWTs
(`api.jwt_auth`). A verifier that refuses a credential may say why (`InvalidCredential`), in the 401's detail.

`POST` requests are also counted against the caller's rate limit (`api.limits.RateLimiter`, 429) once known.

With `MOJAFLOW_AUTH=none` (local experiments only) nobody is authenticated: the `client_key` header decides who
owns what a request starts, and every caller reads every transfer, as before authentication existed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from fastapi import Request

from api.headers import _RULES as HEADER_RULES  # the one statement of each header's rule
from api.problems import Problem, problem_responses
from mojaflow.api_keys import ApiKeyStore, looks_like_api_key

__all__ = [
    "AUTH_RESPONSES",
    "ApiKeyVerifier",
    "Authenticator",
    "Caller",
    "CredentialVerifier",
    "InvalidCredential",
    "unauthorized",
]

log = logging.getLogger("mojaflow.security")

_REALM = 'Bearer realm="mojaflow"'


@dataclass(frozen=True)
class Caller:
    """Who calls: the client whose transfers they act on, who they are (for the audit log and a transfer's
    `decisions`), and whether they may read every client's transfers (an operator)."""

    client_key: str | None  # None only with MOJAFLOW_AUTH=none and no client_key header
    actor: str  # `api_key:<key_id>`, `token:<subject>`, or `anonymous` (MOJAFLOW_AUTH=none)
    operator: bool = False
    outbound_only: bool = False  # reads outbound transfers only (a Send Money client without a credential)

    def may_read(self, owner: str | None) -> bool:
        return self.operator or (owner is not None and owner == self.client_key)

    @property
    def read_scope(self) -> str | None:
        """The client_key a listing is narrowed to; None: every client's."""
        return None if self.operator else self.client_key


class InvalidCredential(Exception):
    """Raised by a verifier to refuse a credential with a reason fit for the caller (never the credential)."""


class RateLimit(Protocol):
    def check(self, caller: Caller) -> None:
        """Raise a 429 `Problem` when the caller sent too many requests."""
        ...


class CredentialVerifier(Protocol):
    """One kind of credential (API keys, OAuth2 tokens)."""

    def reads(self, credential: str) -> bool:
        """Whether this credential is of this verifier's kind (by its form only)."""
        ...

    async def verify(self, credential: str) -> Caller | None:
        """The caller, or None (or InvalidCredential) if the credential is not valid (unknown, revoked, expired,
        forged)."""
        ...


class ApiKeyVerifier:
    """API keys, remembered for `cache_s` once verified: a revoked key stops working within that long, and a busy
    client costs one database read per `cache_s`, not one per request. Unknown keys are never remembered."""

    def __init__(self, store: ApiKeyStore, cache_s: float) -> None:
        self._store = store
        self._cache_s = cache_s
        self._cache: dict[bytes, tuple[Caller, float]] = {}  # by SHA-256 of the key: no key kept in clear

    def reads(self, credential: str) -> bool:
        return looks_like_api_key(credential)

    async def verify(self, credential: str) -> Caller | None:
        digest = hashlib.sha256(credential.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self._store.verify(credential)
        if key is None:
            self._cache.pop(digest, None)
            return None
        caller = Caller(client_key=key.client_key, actor=key.actor, operator=key.operator)
        if self._cache_s > 0:
            if len(self._cache) > 10_000:  # only real keys get here: drop what expired
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            self._cache[digest] = (caller, now + self._cache_s)
        return caller


class Authenticator:
    """Resolves the `Caller` of a request. Built once per app (`api.app`)."""

    def __init__(
        self,
        mode: Literal["api_key", "none"],
        verifiers: Sequence[CredentialVerifier],
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.mode = mode
        self._verifiers = list(verifiers)
        self._rate_limit = rate_limit

    async def caller(self, request: Request, bearer: str | None, api_key: str | None) -> Caller:
        caller = await self._caller(request, bearer, api_key)
        if self._rate_limit is not None and request.method == "POST":  # before the route does anything
            self._rate_limit.check(caller)
        return caller

    async def _caller(self, request: Request, bearer: str | None, api_key: str | None) -> Caller:
        header_client_key = request.headers.get("client_key")
        if self.mode == "none":
            return Caller(client_key=header_client_key, actor="anonymous", operator=True)
        if bearer is not None and api_key is not None and bearer != api_key:
            raise _unauthorized("send one credential: Authorization and X-API-Key differ", invalid=True)
        credential = bearer or api_key
        if not credential:
            raise _unauthorized("send an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`) or a token")
        caller = None
        reason = "the credential is not valid (unknown, revoked or malformed)"
        for verifier in self._verifiers:
            if verifier.reads(credential):
                try:
                    caller = await verifier.verify(credential)
                except InvalidCredential as refused:
                    reason = str(refused)
                break
        if caller is None:
            peer = request.client.host if request.client else "unknown"
            log.warning("client API refused a credential from %s: %s", peer, reason)
            raise _unauthorized(reason, invalid=True)
        if header_client_key is not None:
            rule, pattern = HEADER_RULES["client_key"]
            if not pattern.match(header_client_key):
                message = f"header client_key {rule}"
                errors = [{"field": "client_key", "message": message}]
                raise Problem(400, "invalid_header", "Invalid Money Movement headers", message, errors=errors)
            if header_client_key != caller.client_key:
                raise Problem(
                    403, "client_key_mismatch", "client_key does not match the credential",
                    "the client_key header names another client than the credential's",
                )  # fmt: skip
        return caller


def _auth_responses() -> dict[int | str, dict[str, Any]]:
    responses = problem_responses({401: ["unauthorized"], 403: ["client_key_mismatch"]})
    responses[401]["headers"] = {
        "WWW-Authenticate": {
            "description": '`Bearer realm="mojaflow"`, with `error="invalid_token"` when a credential was sent',
            "required": True,
            "schema": {"type": "string"},
        }
    }
    return responses


# What every authenticated route may answer (its `responses=`, beside its own).
AUTH_RESPONSES = _auth_responses()


def unauthorized(detail: str, *, invalid: bool = False) -> Problem:
    """A 401 `unauthorized` problem with its `WWW-Authenticate` challenge (`invalid`: a credential was sent)."""
    challenge = f'{_REALM}, error="invalid_token"' if invalid else _REALM
    return Problem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


_unauthorized = unauthorized
