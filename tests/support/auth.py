"""The tests' API keys: every request a test sends to a client API of ours carries a real key, made by the
`mojaflow keys create` command against that API's database, as an operator would make it.

Each client API a test starts is registered with its settings (`register_client_api`; a `Stack` registers
itself). `client_api_auth`, the `http` fixture's `auth`, then adds `Authorization: Bearer <key>` to a request for
a registered API that carries no credential of its own: the key of the request's `client_key` header (made on
first use), or, without a well-formed one, the operator key of `OPERATOR_CLIENT_KEY`, which reads every
client's transfers (inbound ones included) as the back office does. Requests to anything else (the simulators,
the backend API) carry no key. Tests of authentication itself send their own credential, or `auth=None`.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, Generator, Mapping
from dataclasses import dataclass, field

import httpx

from tests.support.secret_scan import remember_secret

__all__ = ["OPERATOR_CLIENT_KEY", "ClientApiAuth", "client_api_auth", "keys_for", "make_key", "register_client_api"]

OPERATOR_CLIENT_KEY = "bank"  # MOJAFLOW_DEFAULT_CLIENT_KEY's default: owner of inbound transfers
_CLIENT_KEY = re.compile(r"^[a-zA-Z0-9]{1,10}$")
_CREDENTIALS = ("authorization", "x-api-key")


def _mojaflow(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "keys", *args], env=dict(env), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def make_key(env: Mapping[str, str], client_key: str, *, operator: bool = False, name: str = "tests") -> str:
    """A new key from `mojaflow keys create` with these settings (MOJAFLOW_* environment)."""
    args = ["create", "--client-key", client_key, "--name", name, *(["--operator"] if operator else [])]
    result = _mojaflow(env, *args)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    remember_secret(f"API key of {client_key}", key)  # no log or history may ever show it
    return key


@dataclass
class StackKeys:
    """The keys of one API's database, made once each (one maker at a time: concurrent requests of a test)."""

    env: dict[str, str]
    _keys: dict[tuple[str, bool], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self, client_key: str, *, operator: bool = False) -> str:
        with self._lock:
            if (client_key, operator) not in self._keys:
                self._keys[client_key, operator] = make_key(self.env, client_key, operator=operator)
            return self._keys[client_key, operator]

    async def key_async(self, client_key: str, *, operator: bool = False) -> str:
        known = self._keys.get((client_key, operator))
        return known or await asyncio.to_thread(self.key, client_key, operator=operator)


_REGISTRY: dict[str, StackKeys] = {}
_BY_DATABASE: dict[tuple[str | None, ...], StackKeys] = {}  # APIs on one database share its keys


def register_client_api(url: str, env: Mapping[str, str]) -> StackKeys:
    """Send keys to the client API at `url` (scheme://host:port), which runs with the settings `env`."""
    database = tuple(env.get(f"MOJAFLOW_{name}") for name in ("DATA_DIR", "DATABASE_URL", "SECRETS_KEYS"))
    keys = _BY_DATABASE.setdefault(database, StackKeys(dict(env)))
    _REGISTRY[_origin(httpx.URL(url))] = keys
    return keys


def keys_for(url: str) -> StackKeys:
    return _REGISTRY[_origin(httpx.URL(url))]


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port}"


def _wanted(request: httpx.Request) -> tuple[StackKeys, str, bool] | None:
    keys = _REGISTRY.get(_origin(request.url))
    if keys is None or any(name in request.headers for name in _CREDENTIALS):
        return None
    client_key = request.headers.get("client_key")
    if client_key is not None and _CLIENT_KEY.match(client_key):
        return keys, client_key, False
    return keys, OPERATOR_CLIENT_KEY, True


class ClientApiAuth(httpx.Auth):
    """Adds the registered API's key for the request's client_key (see the module's docstring)."""

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        wanted = _wanted(request)
        if wanted is not None:
            keys, client_key, operator = wanted
            request.headers["Authorization"] = f"Bearer {keys.key(client_key, operator=operator)}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        wanted = _wanted(request)
        if wanted is not None:
            keys, client_key, operator = wanted
            request.headers["Authorization"] = f"Bearer {await keys.key_async(client_key, operator=operator)}"
        yield request


client_api_auth = ClientApiAuth()
