"""The codec endpoint the Temporal Web UI calls to show our encrypted payloads (`--ui-codec-endpoint`).

It decrypts personal data, so it answers only on the machine itself: a caller whose address is not loopback is
refused (also when the client API listens on all interfaces for the CBS), and only browsers on the configured UI
origins may use it (CORS, plus an `Origin` check so a page elsewhere cannot ask for plaintext). That is the dev
server's Web UI on the same machine (`make run`); a real deployment's UI needs the token check of the security work.
It decodes with the payload key ring (any key of `MOJAFLOW_PAYLOAD_KEYS`); a payload of a key id the ring does not
hold is answered 400 `unknown_key_id`, naming that id and the setting.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.problems import Problem
from mojaflow.codec import EncryptionCodec, PayloadDecryptError, UnknownKeyError

__all__ = ["codec_router"]


def codec_router(codec: EncryptionCodec, allowed_origins: list[str]) -> APIRouter:
    router = APIRouter(prefix="/codec", tags=["codec"], include_in_schema=False)

    async def _transform(request: Request, decode: bool) -> JSONResponse:
        if not _is_loopback(request):
            raise Problem(403, "codec_local_only", "Forbidden", "the codec endpoint answers on this machine only")
        if request.headers.get("origin") not in allowed_origins:
            raise Problem(403, "forbidden_origin", "Forbidden", "the codec endpoint serves the Temporal Web UI only")
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
