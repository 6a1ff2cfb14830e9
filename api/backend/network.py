"""Who may call the backend API: only TCP peers inside `MOJAFLOW_BACKEND_ALLOWED_CLIENTS`.

SDK 18.0.2 calls its backend over plain HTTP and sends no credential, so the one thing we can check is where a
request comes from. The check is on the TCP peer address as the server accepted the connection: the backend's
server runs without uvicorn's proxy-header rewriting (see `api.__main__`), so an `X-Forwarded-For` header can
not buy a place on the list. Everyone else gets 403 with the backend's error shape and leaves one line in the
log (logger `mojaflow.security`): client address, method and path, party ids redacted.

FSPIOP code 3000 (generic client error): API Definition v1.1 has no code for an unauthorised caller; 3000 is the
one meant "when a more specific error code is not available", and it is a client error the SDK will not retry
as a server fault.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mojaflow.logs import redact_path

__all__ = ["AllowedClients", "client_allowed"]

log = logging.getLogger("mojaflow.security")

FORBIDDEN_CODE = "3000"
_MAX_LOGGED_PATH = 200


def client_allowed(host: str | None, allowed: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Whether the peer address `host` lies in one of the `allowed` networks. An IPv4 client of a dual-stack
    listener shows as `::ffff:a.b.c.d`: it is checked as the IPv4 address it is. Anything unparsable is refused."""
    if not host:
        return False
    try:
        address: IPv4Address | IPv6Address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in allowed)


def _printable(text: str) -> str:
    """A path as it may go into one log line: no control characters (a `%0A` in the URL is decoded by then)."""
    return "".join(char if char.isprintable() else "?" for char in text[:_MAX_LOGGED_PATH])


class AllowedClients:
    """ASGI middleware: answers 403 `{statusCode: "3000", message}` to a client outside `allowed`."""

    def __init__(self, app: ASGIApp, allowed: Sequence[IPv4Network | IPv6Network]) -> None:
        self.app = app
        self.allowed = tuple(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else None
        if client_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        log.warning(
            "security: backend API refused a client outside MOJAFLOW_BACKEND_ALLOWED_CLIENTS: client=%s %s %s",
            _printable(host or "unknown"),
            scope.get("method", "WEBSOCKET"),
            _printable(redact_path(scope.get("path", ""))),
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse(
            {"statusCode": FORBIDDEN_CODE, "message": "forbidden: this client may not call the backend API"},
            status_code=403,
        )
        await response(scope, receive, send)
