"""A small HTTP/1.1 server on asyncio streams (h11), for the harness's stand-ins that must control the connection
itself: the switch front (e2e/harness/switch.py) cuts a held prepare's connection to show that it never left the
SDK, which an ASGI server cannot do (it would answer 500).

    server = Http11Server(handle)          # async handle(Request) -> Answer; raise Cut to reset the connection
    await server.start(port)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11

__all__ = ["Answer", "Cut", "Handler", "Http11Server", "Request"]

_CHUNK = 65536


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]  # names lower-case
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class Cut(Exception):  # noqa: N818 - an instruction, not an error
    """Raised by a handler: reset the connection without an answer (the request never got anywhere)."""


Handler = Callable[[Request], Awaitable[Answer]]


class Http11Server:
    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _read_request(connection, reader)
                if request is None:
                    break
                try:
                    answer = await self._handle(request)
                except Cut:
                    writer.transport.abort()  # RST: the client sees its request fail, never answered
                    return
                headers = [(k, v) for k, v in answer.headers if k.lower() not in ("content-length", "connection")]
                headers.append(("content-length", str(len(answer.body))))
                writer.write(connection.send(h11.Response(status_code=answer.status, headers=headers)) or b"")
                writer.write(connection.send(h11.Data(data=answer.body)) or b"")
                writer.write(connection.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if connection.our_state is h11.MUST_CLOSE or connection.their_state is h11.MUST_CLOSE:
                    break
                connection.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _read_request(connection: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_CHUNK)
            connection.receive_data(data)
            if not data and head is None:
                return None
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            headers = [(name.decode().lower(), value.decode()) for name, value in head.headers]
            return Request(head.method.decode(), head.target.decode(), headers, bytes(body))
