"""`python -m api`: serves the client API (3004, on `MOJAFLOW_API_HOST`) and the backend API (3003, on
`MOJAFLOW_BACKEND_API_HOST`, optionally over TLS / mutual TLS) from one process.

Both ports are bound before anything else (the database, Temporal): a port taken or refused stops the process at
once with one line naming its setting, exit code 1, rather than one server running without the other."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from api.app import create_backend_app, create_client_app, open_resources
from mojaflow.log_context import RequestLogContext
from mojaflow.logs import configure_logging
from mojaflow.settings import Settings
from mojaflow.temporal import TemporalConnectError


class CannotListen(Exception):
    """A port of ours cannot be bound; the message names the setting."""


def listening_socket(host: str, port: int, setting: str) -> socket.socket:
    """A socket bound to (host, port) and listening, as uvicorn would bind it (an IPv6 host serves IPv4 too), or
    `CannotListen` naming `setting`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:  # taken, not ours to bind, or a host name that does not resolve
        sock.close()
        raise CannotListen(f"{setting}={port} on {host}: {error.strerror or error}") from None
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # both servers stop on our own handler, below
        yield


def backend_tls(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options for the backend API: none (plain HTTP, as SDK 18.0.2 speaks), TLS, or mutual TLS
    when a client CA is set (a client without a certificate it signed fails the handshake)."""
    if settings.backend_tls_cert is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.backend_tls_cert),
        "ssl_keyfile": str(settings.backend_tls_key),
        # TLS 1.3 suites are not affected; for TLS 1.2 (Python's minimum) forward-secret AEAD suites only,
        # instead of uvicorn's default "TLSv1" list
        "ssl_ciphers": "ECDHE+AESGCM:ECDHE+CHACHA20",
    }
    if settings.backend_tls_client_ca is not None:
        options.update(ssl_ca_certs=str(settings.backend_tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def http_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for both servers: the h11 protocol (whatever else is installed), which stops buffering an
    incomplete request head at twice MOJAFLOW_MAX_HEADER_BYTES (a plain 400, connection closed). A complete head
    over the limit itself is refused by api.limits with a 431 of the API's own dialect: the slack lets any head up
    to twice the limit reach that precise answer, however the network splits it."""
    return {"http": "h11", "h11_max_incomplete_event_size": 2 * settings.max_header_bytes}


async def serve(settings: Settings) -> None:
    client_socket = listening_socket(settings.api_host, settings.client_api_port, "MOJAFLOW_CLIENT_API_PORT")
    try:
        backend_socket = listening_socket(
            settings.backend_api_host, settings.backend_api_port, "MOJAFLOW_BACKEND_API_PORT"
        )
    except CannotListen:
        client_socket.close()
        raise
    with client_socket, backend_socket:
        await _serve(settings, client_socket, backend_socket)


async def _serve(settings: Settings, client_socket: socket.socket, backend_socket: socket.socket) -> None:
    async with open_resources(settings) as resources:  # one database engine and one Temporal client for both
        client_api = uvicorn.Config(
            RequestLogContext(create_client_app(settings, resources)),  # the transferId on the request's lines
            host=settings.api_host,
            port=settings.client_api_port,
            log_config=None,
            lifespan="on",
            **http_limits(settings),
        )
        backend_api = uvicorn.Config(
            RequestLogContext(create_backend_app(settings, resources)),
            host=settings.backend_api_host,
            port=settings.backend_api_port,
            log_config=None,
            lifespan="on",
            **http_limits(settings),
            # the allow-list judges the TCP peer: no X-Forwarded-For rewriting of the client address
            proxy_headers=False,
            **backend_tls(settings),
        )
        servers = [_Server(client_api), _Server(backend_api)]
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        sockets = (client_socket, backend_socket)
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True)))


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except CannotListen as error:
        print(f"mojaflow API cannot start: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except TemporalConnectError as error:  # one line naming the setting at fault, no traceback
        print(f"mojaflow API cannot start: {error}", file=sys.stderr, flush=True)
        # Not sys.exit: the SDK's core runtime threads may still call into Python while the interpreter finalizes
        # after a refused connection ("Fatal Python error: PyGILState_Release", exit -6 instead of 1).
        os._exit(1)


if __name__ == "__main__":
    main()
