"""OAuth2 bearer tokens (JWTs) for the client API and the codec endpoint, checked against the identity provider's
JWKS. Off unless `MOJAFLOW_OAUTH_JWKS_URL` is set (with `_ISSUER` and `_AUDIENCE`).

A token is accepted when its `alg` is one of `MOJAFLOW_OAUTH_ALGORITHMS` (asymmetric only: never `none`, never
HS*, so a public key can never serve as an HMAC secret); its `kid` names a signing key of the JWKS (a token
without `kid`: the JWKS holds exactly one); the signature verifies with that key; `iss` is the issuer; `aud` holds
the audience; `exp` is there and not past, `nbf` (if any) reached, `iat` (if any) not in the future, all within
`MOJAFLOW_OAUTH_LEEWAY_S`; and `sub` is there. For the client API the token's `MOJAFLOW_OAUTH_CLIENT_KEY_CLAIM`
must hold a valid client_key: it decides whose transfers the caller acts on, and `sub` is the actor recorded.

The JWKS is fetched (httpx) when first needed and kept `MOJAFLOW_OAUTH_JWKS_CACHE_S`. A token whose `kid` the
cached set does not hold makes one refetch (the provider rotated its keys), at most one per `REFETCH_COOLDOWN_S`
however many such tokens arrive: never one per request. While the provider does not answer, the last set stays.

    jwks = Jwks(settings.oauth_jwks_url, cache_s=settings.oauth_jwks_cache_s)
    verifier = JwtVerifier(JwtValidator.for_client_api(jwks, settings), settings)   # a CredentialVerifier
    caller = await verifier.verify(token)                                            # or raises InvalidToken
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import JWKRegistry, Key

from api.auth import Caller, InvalidCredential
from mojaflow.settings import Settings

__all__ = ["REFETCH_COOLDOWN_S", "InvalidToken", "Jwks", "JwtValidator", "JwtVerifier", "looks_like_jwt"]

log = logging.getLogger("mojaflow.security")

REFETCH_COOLDOWN_S = 5.0
_FETCH_TIMEOUT_S = 5.0
_MAX_JWKS_BYTES = 512 * 1024
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")  # three parts; `none` has an empty third
_CLIENT_KEY = re.compile(r"^[a-zA-Z0-9]{1,10}$")  # the Money Movement header's rule
_SUBJECT = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")  # it goes into the audit log: printable, bounded


class InvalidToken(InvalidCredential):
    """The token is refused; the message says why (never quoting the token)."""


def looks_like_jwt(credential: str) -> bool:
    return _JWT.match(credential) is not None


class Jwks:
    """The identity provider's signing keys by `kid`, fetched and cached as the module says."""

    def __init__(
        self,
        url: str,
        *,
        cache_s: float,
        cooldown_s: float = REFETCH_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_s = cache_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._http = httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S, follow_redirects=False)
        self._keys: dict[str | None, Key] | None = None
        self._fetched_at = float("-inf")  # last successful fetch
        self._tried_at = float("-inf")  # last attempt, successful or not
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> Key:
        """The key a token names; raises InvalidToken if the provider has none such (after one refetch)."""
        keys = await self._current()
        if _pick(keys, kid) is None:
            keys = await self._refresh()  # a rotation? Not if one was fetched (or tried) within the cooldown
        found = _pick(keys, kid)
        if found is None:
            raise InvalidToken("the token's key id (kid) is not one of the identity provider's signing keys")
        return found

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _current(self) -> dict[str | None, Key]:
        if self._keys is not None and self._clock() - self._fetched_at < self._cache_s:
            return self._keys
        return await self._refresh()

    async def _refresh(self) -> dict[str | None, Key]:
        async with self._lock:  # one fetch at a time; who waited for it takes what it brought
            if self._clock() - self._tried_at < self._cooldown_s:
                if self._keys is None:
                    raise InvalidToken("the identity provider's keys could not be fetched; try again")
                return self._keys  # fetched a moment ago, or the provider failed a moment ago: the last set stays
            self._tried_at = self._clock()
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._clock()
            except (httpx.HTTPError, ValueError) as error:
                log.error("cannot fetch the OAuth2 JWKS at %s: %s", self._url, type(error).__name__)
                if self._keys is None:
                    raise InvalidToken("the identity provider's keys could not be fetched; try again") from None
            return self._keys

    async def _fetch(self) -> dict[str | None, Key]:
        response = await self._http.get(self._url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = response.json()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS document without `keys`")
        keys: dict[str | None, Key] = {}
        for entry in entries:
            key = _signing_key(entry)
            if key is not None:
                keys[key.kid] = key
        log.info("OAuth2 JWKS fetched from %s: key ids %s", self._url, sorted(str(kid) for kid in keys))
        return keys


def _signing_key(entry: object) -> Key | None:
    """A public signing key from a JWKS entry; None for what we never verify with (encryption or symmetric keys,
    entries we cannot read)."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    try:
        return JWKRegistry.import_key(entry)
    except (JoseError, ValueError, TypeError):
        log.warning("OAuth2 JWKS: skipped a key that cannot be read (kid %r)", entry.get("kid"))
        return None


def _pick(keys: dict[str | None, Key], kid: str | None) -> Key | None:
    if kid is not None:
        return keys.get(kid)
    return next(iter(keys.values())) if len(keys) == 1 else None


class JwtValidator:
    """Checks a token's signature and registered claims for one audience; returns its claims."""

    def __init__(
        self, jwks: Jwks, *, issuer: str, audience: str, algorithms: list[str], leeway_s: int
    ) -> None:  # fmt: skip
        self._jwks = jwks
        self._algorithms = frozenset(algorithms)
        self._claims = jwt.JWTClaimsRegistry(
            leeway=leeway_s,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    @classmethod
    def from_settings(cls, jwks: Jwks, settings: Settings, audience: str | None = None) -> JwtValidator:
        assert settings.oauth_issuer is not None and settings.oauth_audience is not None  # settings checked both
        return cls(
            jwks, issuer=settings.oauth_issuer, audience=audience or settings.oauth_audience,
            algorithms=settings.oauth_algorithms, leeway_s=settings.oauth_leeway_s,
        )  # fmt: skip

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, UnicodeError):
            raise InvalidToken("the bearer token is not a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:  # `none`, HS*, or anything not configured; checked before any key is used
            raise InvalidToken("the token's signature algorithm (alg) is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("the token's key id (kid) is not a string")
        key = await self._jwks.key(kid)
        if key.get("alg") not in (None, alg):  # a key published for one algorithm is used for that one only
            raise InvalidToken("the token's signature algorithm (alg) does not match its key's")
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except BadSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except (JoseError, ValueError):
            raise InvalidToken("the token cannot be verified (malformed header or claims)") from None
        try:
            self._claims.validate(decoded.claims)
        except ExpiredTokenError:
            raise InvalidToken("the token has expired (exp)") from None
        except MissingClaimError as error:
            raise InvalidToken(f"the token has no `{error.claim}` claim") from None
        except InvalidClaimError as error:
            raise InvalidToken(_invalid_claim(error.claim)) from None
        except JoseError:
            raise InvalidToken("the token's claims are not valid") from None
        return dict(decoded.claims)


def _invalid_claim(claim: str) -> str:
    return {
        "aud": "the token is not for this audience (aud)",
        "iss": "the token is not from the configured issuer (iss)",
        "nbf": "the token is not valid yet (nbf)",
        "iat": "the token was issued in the future (iat)",
    }.get(claim, f"the token's `{claim}` claim is not valid")


class JwtVerifier:
    """The client API's `CredentialVerifier` for JWTs (api.auth): the caller is the token's client_key and `sub`."""

    def __init__(self, validator: JwtValidator, settings: Settings) -> None:
        self._validator = validator
        self._client_key_claim = settings.oauth_client_key_claim
        self._operator_scope = settings.oauth_operator_scope

    def reads(self, credential: str) -> bool:
        return looks_like_jwt(credential)

    async def verify(self, credential: str) -> Caller:
        claims = await self._validator.claims(credential)
        client_key = claims.get(self._client_key_claim)
        if not isinstance(client_key, str) or not _CLIENT_KEY.match(client_key):
            raise InvalidToken(
                f"the token's `{self._client_key_claim}` claim is missing or breaks the client_key rule "
                "^[a-zA-Z0-9]{1,10}$"
            )
        subject = claims["sub"]
        if not isinstance(subject, str) or not _SUBJECT.match(subject):
            raise InvalidToken("the token's `sub` claim must be 1 to 255 characters, without control characters")
        return Caller(client_key=client_key, actor=f"token:{subject}", operator=self._is_operator(claims))

    def _is_operator(self, claims: dict[str, Any]) -> bool:
        if self._operator_scope is None:
            return False
        scopes: set[str] = set()
        for name in ("scope", "scp"):  # RFC 8693 `scope` (space-separated); `scp` as some providers send it
            value = claims.get(name)
            if isinstance(value, str):
                scopes.update(value.split())
            elif isinstance(value, list):
                scopes.update(item for item in value if isinstance(item, str))
        return self._operator_scope in scopes
