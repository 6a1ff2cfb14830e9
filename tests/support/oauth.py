"""A stand-in OAuth2 identity provider for the tests: a real HTTP server on 127.0.0.1 (a thread of the test
process) serving a JWKS of keys generated here, and tokens signed with them, as a provider's token endpoint would
issue them. It counts how often its JWKS is fetched.

    with IdentityProvider() as idp:
        api = api_process(stack, tmp_path, **idp.settings())       # MOJAFLOW_OAUTH_* pointing at it
        token = idp.token(sub="alice", client_key="bank1")
        idp.rotate()                                               # a new signing key (new kid) replaces the old

Every token and private key made here is remembered for the session's secret scan (tests/support/secret_scan.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey

from tests.support.secret_scan import remember_secret

__all__ = ["AUDIENCE", "ISSUER", "IdentityProvider", "generate_unpublished_key", "hmac_token", "unsigned_token"]

ISSUER = "https://idp.mojaflow.test/realms/bank"
AUDIENCE = "mojaflow-client-api"


class IdentityProvider:
    """A JWKS endpoint and a token signer; `keys` are served, `signing` signs (see `rotate`)."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.fetches = 0  # JWKS requests, answered or not
        self.failing = False  # answer 503 (a provider that is down)
        self._lock = threading.Lock()
        self.signing = self.add_key()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                with provider._lock:
                    provider.fetches += 1
                    body = json.dumps({"keys": [key.as_dict(private=False) for key in provider.keys]}).encode()
                if provider.failing:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.jwks_url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-jwks", daemon=True)

    def __enter__(self) -> IdentityProvider:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def settings(self, audience: str = AUDIENCE, **extra: str) -> dict[str, str]:
        """The MOJAFLOW_OAUTH_* settings of an API that trusts this provider."""
        return {
            "MOJAFLOW_OAUTH_JWKS_URL": self.jwks_url,
            "MOJAFLOW_OAUTH_ISSUER": ISSUER,
            "MOJAFLOW_OAUTH_AUDIENCE": audience,
            **extra,
        }

    def add_key(self, kind: str = "RSA") -> Key:
        """A new signing key, published in the JWKS (beside those there)."""
        key: Key = (
            RSAKey.generate_key(2048, parameters={"kid": f"rsa-{uuid.uuid4().hex[:8]}", "use": "sig"})
            if kind == "RSA"
            else ECKey.generate_key("P-256", parameters={"kid": f"ec-{uuid.uuid4().hex[:8]}", "use": "sig"})
        )
        remember_secret(f"private key {key.kid} of the test identity provider", str(key.as_dict(private=True)["d"]))
        with self._lock:
            self.keys.append(key)
        return key

    def rotate(self) -> Key:
        """The provider rotates: a new key signs from now on, and the JWKS serves only it."""
        new = generate_unpublished_key()
        with self._lock:
            self.keys = [new]
        self.signing = new
        return new

    def token(
        self,
        *,
        sub: str = "alice",
        client_key: str | None = "bank1",
        audience: str | list[str] = AUDIENCE,
        issuer: str = ISSUER,
        lifetime_s: int = 300,
        issued_ago_s: int = 0,
        not_before_in_s: int | None = None,
        key: Key | None = None,
        alg: str | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A signed JWT (signed by `signing` unless `key` is given); `claims` are added as they are."""
        signer = key or self.signing
        now = int(time.time()) - issued_ago_s
        body: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": sub, "iat": now, "exp": now + lifetime_s}
        if client_key is not None:
            body["client_key"] = client_key
        if not_before_in_s is not None:
            body["nbf"] = int(time.time()) + not_before_in_s
        body.update(claims)
        algorithm = alg or {RSAKey: "RS256", ECKey: "ES256", OctKey: "HS256"}[type(signer)]
        token = jwt.encode({"alg": algorithm, "kid": signer.kid, **(header or {})}, body, signer)
        remember_secret("a JWT the tests signed", token)
        return token


def generate_unpublished_key(kid: str | None = None) -> RSAKey:
    """An RSA key the provider does not publish (forged tokens; or the next key of a rotation)."""
    key = RSAKey.generate_key(2048, parameters={"kid": kid or f"rsa-{uuid.uuid4().hex[:8]}", "use": "sig"})
    remember_secret(f"private key {key.kid} made by the tests", str(key.as_dict(private=True)["d"]))
    return key


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], kid: str) -> str:
    """An `alg: none` token: no signature at all."""
    return f"{_part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_part(claims)}."


def hmac_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token whose HMAC key is `secret`: with a provider's public key (PEM) as the secret, the classic
    algorithm-confusion forgery (joserfc itself refuses to make one)."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_part(signature)}"
    remember_secret("a JWT the tests signed", token)
    return token
