"""CORS for one path prefix only: the codec endpoint, which the Temporal Web UI calls from the browser.

Nothing else on the client API is for browsers: `/transfers` answers a preflight without any
`Access-Control-Allow-*` header, so no page on any origin can use a browser's ambient access to it.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PrefixCORS"]


class PrefixCORS:
    """`CORSMiddleware(**options)` for requests under `prefix`; other requests pass untouched."""

    def __init__(self, app: ASGIApp, /, *, prefix: str, **options: Any) -> None:
        self._app = app
        self._cors = CORSMiddleware(app, **options)
        self._prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == self._prefix or path.startswith(self._prefix + "/"):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
