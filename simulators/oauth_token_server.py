"""OAuth2 token server simulator: a subscriber's authorization server for the `client_credentials` grant.

Run: `python -m simulators.oauth_token_server --host 127.0.0.1 --port 3007 --data-dir DIR`.

* `POST /token` (RFC 6749 section 4.4, `application/x-www-form-urlencoded`): `grant_type=client_credentials`,
  optional `scope`; the client authenticates by HTTP Basic (id and secret form-urlencoded, section 2.3.1) or by the
  form fields `client_id` / `client_secret`, never both. Answers `{"access_token", "token_type": "Bearer",
  "expires_in", "scope"}` with an opaque token, or RFC 6749 errors (400 `invalid_request`,
  `unsupported_grant_type`, `invalid_scope`; 401 `invalid_client`).
* `POST /introspect` (RFC 7662, form field `token`): `{"active": true, "client_id", "scope", "exp"}` for a token
  issued, not expired and not revoked, else `{"active": false}`. The webhook receiver checks bearer tokens here.

Test-only admin API under `/_sim` (clients and tokens in SQLite in the data dir; the config in memory):

* `POST /_sim/clients` `{"clientId", "clientSecret", "scopes": null | [...]}` registers (or replaces) a client;
  `scopes` are those it may ask for (null: any; an empty request gets them all).
* `PUT /_sim/config` `{"refuseBasic": false, "expiresIn": 3600, "tokenStatus": null}`: refuse client auth by HTTP
  Basic (401 `invalid_client`, so a caller falls back to form fields); the tokens' lifetime in seconds; answer every
  `/token` request with `tokenStatus` (e.g. 503) instead. `GET /_sim/config`.
* `GET /_sim/tokens` - `{"issued", "active", "requests": [{"clientId", "clientAuth": "basic"|"form"|"none",
  "grantType", "scope", "status"}]}`; `DELETE /_sim/tokens` forgets tokens and requests.
* `POST /_sim/revoke` `{"clientId": null}` - revokes every current token (of that client): the receiver then
  answers 401 to it, the path of a token refetched after a 401.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from simulators._common import (
    BadRequest,
    answer_invalid_requests,
    configure_logging,
    open_db,
    read_model,
    run_server,
    simulator_app,
)

__all__ = ["create_app", "main"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, secret TEXT NOT NULL, scopes TEXT);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, client_id TEXT NOT NULL, scope TEXT NOT NULL, expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT, client_auth TEXT NOT NULL, grant_type TEXT,
    scope TEXT, status INTEGER NOT NULL
);
"""
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class _Admin(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ClientSpec(_Admin):
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: str = Field(min_length=1, max_length=500)
    scopes: list[str] | None = None


class Config(_Admin):
    refuse_basic: bool = False
    expires_in: int = Field(default=3600, ge=1, le=86_400 * 30)
    token_status: int | None = Field(default=None, ge=400, le=599)


class Revoke(_Admin):
    client_id: str | None = None


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer."""

    def __init__(self, status: int, error: str, description: str, challenge: bool = False) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.challenge = status, error, description, challenge


def _form(raw: bytes, content_type: str) -> dict[str, str]:
    """The form's single-valued parameters (RFC 6749: a repeated parameter is an invalid request)."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        values = parse_qs(raw.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "malformed form body") from None
    repeated = sorted(name for name, items in values.items() if len(items) > 1)
    if repeated:
        raise OAuthError(400, "invalid_request", f"repeated parameters: {', '.join(repeated)}")
    return {name: items[0] for name, items in values.items()}


def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed HTTP Basic credentials", challenge=True) from None
    if not sep:
        raise OAuthError(401, "invalid_client", "malformed HTTP Basic credentials", challenge=True)
    return unquote_plus(client_id), unquote_plus(secret)


def _client_credentials(authorization: str | None, form: dict[str, str]) -> tuple[str | None, str, str]:
    """(client id, secret, "basic" | "form" | "none") as the client presented them, not yet verified."""
    basic = _basic(authorization)
    if basic and ("client_id" in form or "client_secret" in form):
        raise OAuthError(400, "invalid_request", "client credentials in both HTTP Basic and the form")
    if basic:
        return basic[0], basic[1], "basic"
    if "client_id" in form:
        return form["client_id"], form.get("client_secret", ""), "form"
    return None, "", "none"


class TokenStore:
    def __init__(self, data_dir: Path) -> None:
        self.db = open_db(Path(data_dir) / "oauth-token-server.db")
        self.db.executescript(_SCHEMA)

    def client_scopes(self, client_id: str, secret: str) -> list[str] | None:
        """The client's allowed scopes (["*"] for any) when id and secret match, else None."""
        row = self.db.execute("SELECT secret, scopes FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        if row is None or not hmac.compare_digest(row["secret"].encode(), secret.encode()):
            return None
        return ["*"] if row["scopes"] is None else row["scopes"].split()

    def issue(self, client_id: str, scope: str, expires_in: int) -> str:
        token = secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO tokens (token, client_id, scope, expires_at) VALUES (?, ?, ?, ?)",
            (token, client_id, scope, time.time() + expires_in),
        )
        return token

    def introspect(self, token: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM tokens WHERE token = ?", (token,)).fetchone()
        if row is None or row["revoked"] or row["expires_at"] <= time.time():
            return {"active": False}
        return {
            "active": True,
            "client_id": row["client_id"],
            "scope": row["scope"],
            "exp": int(row["expires_at"]),
            "token_type": "Bearer",
        }

    def log(self, client_id: str | None, client_auth: str, form: dict[str, str], status: int) -> None:
        self.db.execute(
            "INSERT INTO requests (client_id, client_auth, grant_type, scope, status) VALUES (?, ?, ?, ?, ?)",
            (client_id, client_auth, form.get("grant_type"), form.get("scope"), status),
        )


def create_app(data_dir: Path) -> FastAPI:
    logger = logging.getLogger("simulators.oauth_token_server")
    store = TokenStore(Path(data_dir))
    config = Config()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("OAuth2 token server ready")
        yield
        store.db.close()

    app = simulator_app("mojaflow OAuth2 token server", logger, lifespan)
    answer_invalid_requests(app)

    def authenticate(client_id: str | None, secret: str, how: str) -> tuple[str, list[str]]:
        """(the client's id, its allowed scopes), or `OAuthError`."""
        if how == "basic" and config.refuse_basic:
            raise OAuthError(401, "invalid_client", "client authentication by HTTP Basic is not supported")
        scopes = store.client_scopes(client_id, secret) if client_id is not None else None
        if client_id is None or scopes is None:
            raise OAuthError(401, "invalid_client", "unknown client or wrong secret", challenge=how != "form")
        return client_id, scopes

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form: dict[str, str] = {}
        client_id, how = None, "none"
        try:
            if config.token_status is not None:
                raise OAuthError(config.token_status, "temporarily_unavailable", "simulated fault")
            form = _form(await request.body(), request.headers.get("content-type", ""))
            client_id, secret, how = _client_credentials(request.headers.get("authorization"), form)
            granted_to, allowed = authenticate(client_id, secret, how)
            if "grant_type" not in form:
                raise OAuthError(400, "invalid_request", "grant_type is required")
            if form["grant_type"] != "client_credentials":
                raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
            asked = form.get("scope", "").split()
            if "*" not in allowed and not set(asked) <= set(allowed):
                raise OAuthError(400, "invalid_scope", "scope not allowed for this client")
            scope = " ".join(asked or ([] if "*" in allowed else allowed))
        except OAuthError as refusal:
            store.log(client_id, how, form, refusal.status)
            headers = {**_NO_STORE, **({"WWW-Authenticate": 'Basic realm="token"'} if refusal.challenge else {})}
            body = {"error": refusal.error, "error_description": refusal.description}
            return JSONResponse(body, status_code=refusal.status, headers=headers)
        store.log(client_id, how, form, 200)
        issued = store.issue(granted_to, scope, config.expires_in)
        granted = {"access_token": issued, "token_type": "Bearer", "expires_in": config.expires_in, "scope": scope}
        return JSONResponse(granted, headers=_NO_STORE)

    @app.post("/introspect")
    async def introspect(request: Request) -> dict[str, Any]:
        try:
            form = _form(await request.body(), request.headers.get("content-type", ""))
        except OAuthError as refusal:
            raise BadRequest(refusal.description) from None
        return store.introspect(form.get("token", ""))

    @app.post("/_sim/clients", status_code=201)
    async def sim_client(request: Request) -> dict[str, Any]:
        spec = await read_model(request, ClientSpec)
        scopes = None if spec.scopes is None else " ".join(spec.scopes)
        store.db.execute(
            "INSERT OR REPLACE INTO clients (client_id, secret, scopes) VALUES (?, ?, ?)",
            (spec.client_id, spec.client_secret, scopes),
        )
        return {"clientId": spec.client_id, "scopes": spec.scopes}

    @app.put("/_sim/config")
    async def sim_put_config(request: Request) -> dict[str, Any]:
        nonlocal config
        config = await read_model(request, Config)
        return config.model_dump(by_alias=True)

    @app.get("/_sim/config")
    async def sim_get_config() -> dict[str, Any]:
        return config.model_dump(by_alias=True)

    @app.get("/_sim/tokens")
    async def sim_tokens() -> dict[str, Any]:
        issued = store.db.execute("SELECT count(*) FROM tokens").fetchone()[0]
        active = store.db.execute(
            "SELECT count(*) FROM tokens WHERE revoked = 0 AND expires_at > ?", (time.time(),)
        ).fetchone()[0]
        rows = store.db.execute("SELECT * FROM requests ORDER BY seq").fetchall()
        requests = [
            {"clientId": r["client_id"], "clientAuth": r["client_auth"], "grantType": r["grant_type"],
             "scope": r["scope"], "status": r["status"]}
            for r in rows
        ]  # fmt: skip
        return {"issued": issued, "active": active, "requests": requests}

    @app.delete("/_sim/tokens")
    async def sim_forget_tokens() -> Response:
        store.db.executescript("DELETE FROM tokens; DELETE FROM requests;")
        return Response(status_code=204)

    @app.post("/_sim/revoke")
    async def sim_revoke(request: Request) -> dict[str, int]:
        spec = await read_model(request, Revoke) if (await request.body()).strip() else Revoke()
        if spec.client_id is None:
            cursor = store.db.execute("UPDATE tokens SET revoked = 1 WHERE revoked = 0")
        else:
            cursor = store.db.execute(
                "UPDATE tokens SET revoked = 1 WHERE revoked = 0 AND client_id = ?", (spec.client_id,)
            )
        return {"revoked": cursor.rowcount}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.oauth_token_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3007)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging("simulators.oauth_token_server")
    run_server(create_app(args.data_dir), args.host, args.port)


if __name__ == "__main__":
    main()
