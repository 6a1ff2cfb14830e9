"""The codec endpoint the Temporal Web UI calls to show our encrypted payloads (`--ui-codec-endpoint`).

It decrypts personal data, so who may call it is decided first, by `MOJAFLOW_CODEC_AUTH`:

* `local` (default; `make run`'s dev server and its Web UI on the same machine): a caller whose address is not
  loopback is refused (also when the client API listens on all interfaces for the CBS), and only browsers on the
  configured UI origins may use it (CORS, plus an `Origin` check so a page elsewhere cannot ask for plaintext).
* `token` (a Temporal UI elsewhere, with its users signed in through the identity provider): the UI forwards its
  user's access token (`TEMPORAL_CODEC_PASS_ACCESS_TOKEN`), which must be a valid JWT of the configured JWKS for
  `MOJAFLOW_CODEC_OAUTH_AUDIENCE` (api.jwt_auth); scripts may send an operator API key instead. Anything else is
  401, a client's (not an operator's) API key 403, a browser on another origin 403. CORS then allows credentials,
  for the exact UI origins only (api.app).

It decodes with the payload key ring (any key of `MOJAFLOW_PAYLOAD_KEYS`); a payload of a key id the ring does not
hold is answered 400 `unknown_key_id`, naming that id and the setting.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.auth import ApiKeyVerifier, InvalidCredential, unauthorized
from api.jwt_auth import JwtValidator, looks_like_jwt
from api.problems import Problem
from mojaflow.api_keys import looks_like_api_key
from mojaflow.codec import EncryptionCodec, PayloadDecryptError, UnknownKeyError

__all__ = ["CodecGuard", "LocalOnly", "TokenRequired", "codec_router"]

log = logging.getLogger("mojaflow.security")


class CodecGuard(Protocol):
    async def check(self, request: Request) -> None:
        """Return if the request may use the codec endpoint; raise a `Problem` otherwise."""
        ...


class LocalOnly:
    """`MOJAFLOW_CODEC_AUTH=local`: loopback callers from the allowed origins."""

    def __init__(self, allowed_origins: list[str]) -> None:
        self._origins = list(allowed_origins)

    async def check(self, request: Request) -> None:
        if not _is_loopback(request):
            raise Problem(403, "codec_local_only", "Forbidden", "the codec endpoint answers on this machine only")
        if request.headers.get("origin") not in self._origins:
            raise Problem(403, "forbidden_origin", "Forbidden", "the codec endpoint serves the Temporal Web UI only")


class TokenRequired:
    """`MOJAFLOW_CODEC_AUTH=token`: a valid JWT or an operator API key, from anywhere; a browser only from the
    allowed origins. `api_keys` and `tokens` are set once the app's resources are open (api.app's lifespan)."""

    def __init__(self, allowed_origins: list[str]) -> None:
        self._origins = list(allowed_origins)
        self.api_keys: ApiKeyVerifier | None = None
        self.tokens: JwtValidator | None = None  # None: no OAuth2 configured, operator API keys only

    async def check(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin not in self._origins:  # a browser on another page: never, whatever it sends
            raise Problem(403, "forbidden_origin", "Forbidden", "the codec endpoint serves the Temporal Web UI only")
        credential = _credential(request)
        if credential is None:
            raise unauthorized("send the Web UI user's access token (`Authorization: Bearer`) or an operator API key")
        try:
            if looks_like_api_key(credential) and self.api_keys is not None:
                caller = await self.api_keys.verify(credential)
                if caller is None:
                    raise InvalidCredential("the API key is not valid (unknown or revoked)")
                if not caller.operator:
                    _refused(request, "a client's API key (not an operator's)")
                    raise Problem(403, "operator_required", "Forbidden", "the codec endpoint takes an operator's key")
                return
            if looks_like_jwt(credential) and self.tokens is not None:
                await self.tokens.claims(credential)
                return
            raise InvalidCredential("the credential is neither a valid token nor an operator API key")
        except InvalidCredential as refused:
            _refused(request, str(refused))
            raise unauthorized(str(refused), invalid=True) from None


def _credential(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def _refused(request: Request, reason: str) -> None:
    peer = request.client.host if request.client else "unknown"
    log.warning("codec endpoint refused a caller from %s: %s", peer, reason)


def codec_router(codec: EncryptionCodec, allowed_origins: list[str], *, guard: CodecGuard | None = None) -> APIRouter:
    """`/codec/decode` and `/codec/encode`, behind `guard` (default: `LocalOnly(allowed_origins)`)."""
    router = APIRouter(prefix="/codec", tags=["codec"], include_in_schema=False)
    checked = guard or LocalOnly(allowed_origins)

    async def _transform(request: Request, decode: bool) -> JSONResponse:
        await checked.check(request)
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError:
            raise Problem(400, "malformed_json", "Malformed payloads", 'body must be {"payloads": [...]}') from None
        try:
            result = await (codec.decode(payloads.payloads) if decode else codec.encode(payloads.payloads))
        except UnknownKeyError as error:  # names the key id and the setting: what the operator must add
            raise Problem(400, "unknown_key_id", "Unknown payload key", str(error)) from None
        except PayloadDecryptError as error:
            raise Problem(400, "undecodable", "Cannot decode", str(error)) from None
        except Exception:
            raise Problem(400, "undecodable", "Cannot decode", "payloads were not encrypted with this key") from None
        body: dict[str, Any] = json_format.MessageToDict(Payloads(payloads=result))
        return JSONResponse(body)

    @router.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        return await _transform(request, decode=True)

    @router.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        return await _transform(request, decode=False)

    return router


def _is_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an address (e.g. a unix socket's peer name)
        return False
