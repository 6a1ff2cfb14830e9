"""A deliberately broken CBS: the CBS simulator behind an ASGI layer that breaks the contract as a careless bank
might, for the tests of `mojaflow cbs-check`. Everything not broken is the simulator's own behaviour.

    python -m tests.support.broken_cbs --port P --data-dir D [--hold-not-idempotent] [--malformed-hold]
                                       [--refusal-status insufficient_funds=500 ...]

* `--hold-not-idempotent`: `POST /holds` ignores the holdKey (each call places a new hold).
* `--malformed-hold`: `GET /holds/{id}` answers its amount as a JSON number and without `status`.
* `--refusal-status CODE=STATUS`: the refusal CODE is answered with that HTTP status (e.g. a 500).
* `--unlisted-holds`: `GET /holds?status=HELD` (when the simulator has it) lists no hold.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from simulators._common import configure_logging, run_server
from simulators.cbs import create_app

__all__ = ["Breakages", "main"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]


class Breakages:
    """ASGI middleware: rewrites the request of `POST /holds` and the answers named by the switches."""

    def __init__(
        self,
        app: App,
        *,
        hold_not_idempotent: bool,
        malformed_hold: bool,
        refusal_status: dict[str, int],
        unlisted_holds: bool = False,
    ) -> None:
        self.app = app
        self.unlisted_holds = unlisted_holds
        self.hold_not_idempotent = hold_not_idempotent
        self.malformed_hold = malformed_hold
        self.refusal_status = refusal_status

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if self.hold_not_idempotent and method == "POST" and path == "/holds":
            receive = await _new_key_each_time(receive)
        start: Message = {}
        chunks: list[bytes] = []

        async def distorted(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            status, body = self._distort(method, path, start["status"], b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, distorted)

    def _distort(self, method: str, path: str, status: int, body: bytes) -> tuple[int, bytes]:
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            return status, body
        if not isinstance(answer, dict):
            return status, body
        code = answer.get("code")
        if status >= 400 and isinstance(code, str) and code in self.refusal_status:
            return self.refusal_status[code], body
        if self.malformed_hold and method == "GET" and path.startswith("/holds/") and status == 200:
            answer.pop("status", None)
            answer["amount"] = float(answer["amount"])
            return status, json.dumps(answer).encode()
        if self.unlisted_holds and method == "GET" and path == "/holds" and status == 200:
            return status, json.dumps({"holds": [], "nextCursor": None}).encode()
        return status, body


async def _new_key_each_time(receive: Receive) -> Receive:
    """The request body with a fresh holdKey: the simulator then sees every call as a new hold."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = bool(message.get("more_body"))
    try:
        request = json.loads(body)
        if isinstance(request, dict) and isinstance(request.get("holdKey"), str):
            request["holdKey"] = f"{request['holdKey'][:90]}-{uuid.uuid4().hex}"
            body = json.dumps(request).encode()
    except ValueError:
        pass
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _status_switch(value: str) -> tuple[str, int]:
    code, _, status = value.partition("=")
    return code, int(status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.broken_cbs", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=Path, default=None)
    parser.add_argument("--hold-not-idempotent", action="store_true")
    parser.add_argument("--malformed-hold", action="store_true")
    parser.add_argument("--refusal-status", type=_status_switch, action="append", default=[])
    parser.add_argument("--unlisted-holds", action="store_true")
    args = parser.parse_args(argv)
    configure_logging("simulators.cbs")
    app = create_app(args.data_dir, seed_file=args.seed)
    app.add_middleware(
        Breakages,  # type: ignore[arg-type]
        hold_not_idempotent=args.hold_not_idempotent,
        malformed_hold=args.malformed_hold,
        refusal_status=dict(args.refusal_status),
        unlisted_holds=args.unlisted_holds,
    )
    run_server(app, args.host, args.port)


if __name__ == "__main__":
    main()
