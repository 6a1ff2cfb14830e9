"""Webhook receiver simulator: a subscriber's endpoint that answers 200 and keeps what it got.

Run: `python -m simulators.webhook_receiver --host 127.0.0.1 --port 3006 --data-dir DIR`.

Any `POST` to a path outside `/_sim` is a webhook: recorded on arrival (headers, body byte for byte), then answered
200 `{"received": true}`, or as the fault switch or the auth check say. Test-only admin API under `/_sim` (the
record lives in SQLite in the data dir; faults and auth live in memory, a restart clears them):

* `GET /_sim/events?eventId=&transferId=&after=<seq>&limit=` - `{"count": <matching>, "events": [...]}`, each with
  `seq`, `receivedAt`, `path`, `eventId`, `transferId`, `headers`, `body` (JSON), `rawBody`, `authOk`, `status`
  (answered, or to answer), `outcome` (`pending` while held or delayed, `answered`, `client_gone`);
  `DELETE /_sim/events` forgets them.
* `PUT /_sim/faults` `{"status": 500, "delayS": 0, "hold": false, "location": "/redirected", "times": null}` - how
  to answer the next `times` authenticated requests (null: until cleared): that status (3xx with `Location`), after
  `delayS`; `hold: true` keeps each request open until `POST /_sim/release` (then it answers `status`), the caller
  goes away, or the server stops. `GET /_sim/faults` (with `remaining` and `held`), `DELETE /_sim/faults`.
* `PUT /_sim/auth` - the credentials a request must carry, else 401: `{"type": "api_keys", "headers": {name:
  value}}`, `{"type": "basic", "username", "password"}`, `{"type": "oauth2", "tokenServerUrl", "scope"?}` (bearer
  tokens checked by introspection at `simulators.oauth_token_server`), `{"type": "none"}` (the default).
  `GET /_sim/auth` shows the type, `DELETE /_sim/auth` is `none`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from simulators._common import (
    BadRequest,
    answer_invalid_requests,
    configure_logging,
    describe_errors,
    read_json,
    read_model,
    run_server,
    simulator_app,
)
from simulators.webhook_receiver_store import (
    ApiKeysAuth,
    AuthSpec,
    BasicAuth,
    EventLog,
    FaultSpec,
    NoAuth,
    OAuth2Auth,
    Outcome,
)

__all__ = ["create_app", "main"]

_AUTH = TypeAdapter(AuthSpec)
_NO_BODY = {204, 304}


class Faults:
    """The fault switch and the requests it holds open."""

    def __init__(self) -> None:
        self.spec: FaultSpec | None = None
        self.remaining: int | None = None
        self.held = 0
        self._release = asyncio.Event()

    def set(self, spec: FaultSpec) -> None:
        self.spec, self.remaining = spec, spec.times

    def clear(self) -> None:
        self.spec, self.remaining = None, None

    def take(self) -> FaultSpec | None:
        spec = self.spec
        if spec is not None and self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.clear()
        return spec

    def release(self) -> int:
        """Let every held request answer; later ones are held again while the fault says so."""
        released = self.held
        self._release.set()
        self._release = asyncio.Event()
        return released

    def describe(self) -> dict[str, Any]:
        spec = self.spec.model_dump(by_alias=True) if self.spec else None
        return {"fault": spec, "remaining": self.remaining, "held": self.held}

    async def wait(self, request: Request, spec: FaultSpec) -> bool:
        """Wait as `spec` says; False when the caller went away first."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(_disconnected(request))]
        if spec.hold:
            waits.append(asyncio.ensure_future(self._release.wait()))
            self.held += 1
        else:
            waits.append(asyncio.ensure_future(asyncio.sleep(spec.delay_s)))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[0] not in done
        finally:
            for waiting in waits:
                waiting.cancel()
            if spec.hold:
                self.held -= 1


async def _disconnected(request: Request) -> None:
    """Returns when the caller closes the connection (the body was already read, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class AuthCheck:
    """The credentials a webhook must carry; compared in constant time."""

    def __init__(self) -> None:
        self.spec: NoAuth | ApiKeysAuth | BasicAuth | OAuth2Auth = NoAuth(type="none")
        self.client: httpx.AsyncClient | None = None

    async def allows(self, request: Request) -> bool:
        spec = self.spec
        if isinstance(spec, ApiKeysAuth):
            return all(_same(request.headers.get(name), value) for name, value in spec.headers.items())
        scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
        if isinstance(spec, BasicAuth):
            if scheme.lower() != "basic":
                return False
            try:
                username, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return _same(username, spec.username) & _same(password, spec.password)
        if isinstance(spec, OAuth2Auth):
            return scheme.lower() == "bearer" and bool(credentials) and await self._active(spec, credentials)
        return True

    async def _active(self, spec: OAuth2Auth, token: str) -> bool:
        assert self.client is not None
        url = str(spec.token_server_url).rstrip("/") + "/introspect"
        try:
            answer = (await self.client.post(url, data={"token": token})).json()
        except (httpx.HTTPError, ValueError):
            return False  # a token we cannot check is not accepted
        scopes = str(answer.get("scope") or "").split()
        return answer.get("active") is True and (spec.scope is None or spec.scope in scopes)

    def challenge(self) -> str:
        return 'Basic realm="webhooks"' if isinstance(self.spec, BasicAuth) else 'Bearer error="invalid_token"'


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _answer(status: int, spec: FaultSpec | None, challenge: str | None = None) -> Response:
    headers = {"Location": spec.location} if spec and 300 <= status < 400 else {}
    if challenge:
        headers["WWW-Authenticate"] = challenge
    if status in _NO_BODY:
        return Response(status_code=status, headers=headers)
    body = {"received": True} if status == 200 else {"error": "unauthorized" if challenge else "simulated fault"}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(data_dir: Path) -> FastAPI:
    logger = logging.getLogger("simulators.webhook_receiver")
    events = EventLog(Path(data_dir))
    faults = Faults()
    auth = AuthCheck()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            auth.client = client
            logger.info("webhook receiver ready")
            yield
        events.close()
        logger.info("webhook receiver stopped")

    app = simulator_app("mojaflow webhook receiver", logger, lifespan)
    answer_invalid_requests(app)

    @app.get("/_sim/events")
    async def sim_events(
        eventId: str | None = None,  # noqa: N803 - wire names
        transferId: str | None = None,  # noqa: N803
        after: int = 0,
        limit: int = 1000,
    ) -> dict[str, Any]:
        if not 1 <= limit <= 10_000:
            raise BadRequest("limit must be between 1 and 10000")
        count, found = events.query(eventId, transferId, after, limit)
        return {"count": count, "events": found}

    @app.delete("/_sim/events")
    async def sim_clear_events() -> Response:
        events.clear()
        return Response(status_code=204)

    @app.put("/_sim/faults")
    async def sim_put_fault(request: Request) -> dict[str, Any]:
        faults.set(await read_model(request, FaultSpec))
        logger.info("fault set: status %s", faults.spec.status if faults.spec else "-")
        return faults.describe()

    @app.get("/_sim/faults")
    async def sim_get_faults() -> dict[str, Any]:
        return faults.describe()

    @app.delete("/_sim/faults")
    async def sim_clear_faults() -> Response:
        faults.clear()
        return Response(status_code=204)

    @app.post("/_sim/release")
    async def sim_release() -> dict[str, int]:
        return {"released": faults.release()}

    @app.put("/_sim/auth")
    async def sim_put_auth(request: Request) -> dict[str, str]:
        data = await read_json(request)
        try:
            auth.spec = _AUTH.validate_python(data)
        except ValidationError as exc:
            raise BadRequest(describe_errors(exc)) from None
        logger.info("auth set: %s", auth.spec.type)  # never the credentials
        return {"type": auth.spec.type}

    @app.get("/_sim/auth")
    async def sim_get_auth() -> dict[str, str]:
        return {"type": auth.spec.type}

    @app.delete("/_sim/auth")
    async def sim_clear_auth() -> Response:
        auth.spec = NoAuth(type="none")
        return Response(status_code=204)

    @app.post("/{path:path}")
    async def webhook(path: str, request: Request) -> Response:
        if path.startswith("_sim"):
            return JSONResponse({"code": "not_found", "message": "no such admin route"}, status_code=404)
        body = await request.body()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():  # repeated headers joined as HTTP does
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        allowed = await auth.allows(request)
        seq = events.arrived("/" + path, headers, body, allowed)
        if not allowed:
            events.finished(seq, 401, "answered")
            return _answer(401, None, auth.challenge())
        spec = faults.take()
        status = spec.status if spec else 200
        outcome: Outcome = "answered"
        if spec and (spec.hold or spec.delay_s):
            events.finished(seq, status, "pending")
            if not await faults.wait(request, spec):
                outcome = "client_gone"
        events.finished(seq, status, outcome)
        return _answer(status, spec)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.webhook_receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3006)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging("simulators.webhook_receiver")
    run_server(create_app(args.data_dir), args.host, args.port)


if __name__ == "__main__":
    main()
