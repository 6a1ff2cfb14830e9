"""Abuse limits, and that none of them leaves a half-made transfer: a refused request starts no workflow and claims
no idempotency key (the same request sent again once allowed makes the transfer, as a first request: 201, not a
replay).

An API process of its own (tests/support/api_process.py) runs with `MOJAFLOW_RATE_LIMIT_PER_MINUTE=20` and the
default size limits (1 MiB bodies, 16 KiB heads): a credential's 21st POST within the burst is 429 with
`Retry-After`, another credential is not affected, reads are never limited; a body over 1 MiB is 413 (by its
Content-Length, or chunked as it is read) while exactly 1 MiB passes; a head over 16 KiB is 431, and a head still
incomplete at twice that is refused by the HTTP server itself, on both APIs. Every such answer is as the published
OpenAPI document says.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.support.api_process import Api, api_process
from tests.support.auth import make_key
from tests.support.transfers import money_movement_headers, new_payer, transfer_body

PER_MINUTE = 20
LIMITS = Settings(_env_file=None)  # type: ignore[call-arg]  # the defaults, which this API runs with
MAX_BODY, MAX_HEAD = LIMITS.max_body_bytes, LIMITS.max_header_bytes
CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]  # fmt: skip


@pytest.fixture(scope="module")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_process(
        stack, tmp_path_factory.mktemp("limits-api"), MOJAFLOW_RATE_LIMIT_PER_MINUTE=str(PER_MINUTE)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def document(api: Api) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(httpx.get(f"{api.client_url}/openapi.json").raise_for_status().json())


@pytest.fixture
async def plain() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


class Client:
    """A client of its own (its own key, so its own bucket) and a payer of its own."""

    def __init__(self, stack: Stack, client_key: str, payer: str) -> None:
        self.client_key = client_key
        self.key = make_key(stack.env, client_key)
        self.payer = payer

    def headers(self, idempotency_key: str | None = None, **extra: str) -> dict[str, str]:
        return {**money_movement_headers(idempotency_key, client_key=self.client_key),
                "Authorization": f"Bearer {self.key}", "Prefer": "wait=15", **extra}  # fmt: skip


@pytest.fixture
async def client(stack: Stack, plain: httpx.AsyncClient) -> Client:
    payer, _ = await new_payer(plain, stack.cbs_url)
    return await asyncio.to_thread(Client, stack, f"l{uuid.uuid4().hex[:9]}", payer)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    return problem


def _documented(document: schemathesis.BaseSchema, response: httpx.Response, method: str, path: str) -> None:
    document[path][method].Case().validate_response(response, checks=CONFORMANCE)


async def _no_workflow(stack: Stack, home_transaction_id: str) -> bool:
    return (await stack.client.count_workflows(f"HomeTransactionId = '{home_transaction_id}'")).count == 0


async def _created_anew(plain: httpx.AsyncClient, api: Api, body: bytes, headers: dict[str, str]) -> None:
    """The request a limit refused, sent again within the limits: a new transfer, so nothing was claimed before."""
    response = await plain.post(f"{api.client_url}/transfers", content=body,
                                headers={**headers, "content-type": "application/json"})  # fmt: skip
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert response.json()["currentState"] == "COMPLETED"


# -- rate limit --------------------------------------------------------------------------------------------------


async def test_the_rate_limit_refuses_a_credentials_excess_posts_with_429_and_claims_nothing(
    stack: Stack, api: Api, document: schemathesis.BaseSchema, plain: httpx.AsyncClient, client: Client
) -> None:
    url = f"{api.client_url}/transfers"
    burst = await asyncio.gather(*(plain.post(url, json={}, headers=client.headers()) for _ in range(PER_MINUTE)))
    assert [answer.status_code for answer in burst] == [422] * PER_MINUTE  # each counted, none started anything

    body = transfer_body(payer=client.payer)
    headers = client.headers()
    limited = await plain.post(url, json=body, headers=headers)
    read = await plain.get(url, headers=client.headers())
    other = await asyncio.to_thread(Client, stack, f"l{uuid.uuid4().hex[:9]}", client.payer)
    others_post = await plain.post(url, json=transfer_body(payer=client.payer), headers=other.headers())

    _problem(limited, 429, "rate_limited")
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 60 // PER_MINUTE  # one request's worth of refill
    _documented(document, limited, "POST", "/transfers")
    assert await _no_workflow(stack, body["homeTransactionId"])
    assert read.status_code == 200  # reads are not limited
    assert others_post.status_code == 201, others_post.text  # a bucket per credential

    await asyncio.sleep(retry_after)  # as the client is told to
    await _created_anew(plain, api, json.dumps(body).encode(), headers)


# -- body size ---------------------------------------------------------------------------------------------------


def _padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes (trailing whitespace: still the same valid body)."""
    encoded = json.dumps(body).encode()
    return encoded + b" " * (size - len(encoded))


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_body_over_the_limit_is_413_by_length_or_chunked_and_claims_nothing(
    stack: Stack, api: Api, document: schemathesis.BaseSchema, plain: httpx.AsyncClient, client: Client
) -> None:
    url = f"{api.client_url}/transfers"
    body, key = transfer_body(payer=client.payer), uuid.uuid4().hex
    headers = {**client.headers(key), "content-type": "application/json"}
    too_large = _padded(body, MAX_BODY + 1)

    by_length = await plain.post(url, content=too_large, headers=headers)
    chunked = await plain.post(url, content=_chunks(too_large), headers=headers)
    codec = await plain.post(f"{api.client_url}/codec/decode", content=_chunks(too_large),
                             headers={"Origin": "http://127.0.0.1:8233"})  # fmt: skip
    backend = await plain.post(f"{api.backend_url}/quoterequests", content=_chunks(too_large),
                               headers={"content-type": "application/json"})  # fmt: skip

    assert "transfer-encoding" not in by_length.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    for answer in (by_length, chunked, codec):
        assert str(MAX_BODY) in _problem(answer, 413, "body_too_large")["detail"]
        assert answer.headers["connection"] == "close"
    _documented(document, by_length, "POST", "/transfers")
    assert (backend.status_code, backend.json()["statusCode"]) == (413, "3100")
    assert await _no_workflow(stack, body["homeTransactionId"])

    await _created_anew(plain, api, _padded(body, MAX_BODY), client.headers(key))  # exactly the limit: fine


# -- header size -------------------------------------------------------------------------------------------------


async def test_a_head_over_the_limit_is_431_and_claims_nothing(
    stack: Stack, api: Api, document: schemathesis.BaseSchema, plain: httpx.AsyncClient, client: Client
) -> None:
    url = f"{api.client_url}/transfers"
    body, key = transfer_body(payer=client.payer), uuid.uuid4().hex
    padding = {"X-Padding": "p" * (MAX_HEAD + 1000)}  # complete, over the limit, under twice it

    posted = await plain.post(url, json=body, headers=client.headers(key, **padding))
    read = await plain.get(url, headers=client.headers(**padding))
    backend = await plain.get(f"{api.backend_url}/health", headers=padding)
    small = await plain.get(url, headers=client.headers(**{"X-Padding": "p" * (MAX_HEAD // 2)}))

    for answer, method in ((posted, "POST"), (read, "GET")):
        assert str(MAX_HEAD) in _problem(answer, 431, "headers_too_large")["detail"]
        _documented(document, answer, method, "/transfers")
    assert (backend.status_code, backend.json()["statusCode"]) == (431, "3100")
    assert small.status_code == 200, small.text
    assert await _no_workflow(stack, body["homeTransactionId"])
    await _created_anew(plain, api, json.dumps(body).encode(), client.headers(key))


def _endless_head(port: int) -> bytes:
    """A request head that never ends, as one client writes it: what the server answers before it closes."""
    head = b"GET /transfers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * (3 * MAX_HEAD)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before it read everything
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


async def test_a_head_that_outgrows_twice_the_limit_is_refused_by_the_server_itself(api: Api) -> None:
    client_port = int(api.client_url.rsplit(":", 1)[1])
    for port in (client_port, api.backend_port):
        answer = await asyncio.to_thread(_endless_head, port)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"connection: close" in answer.lower()  # and it did close: recv returned


async def test_the_published_document_lists_the_limits(document: schemathesis.BaseSchema, api: Api) -> None:
    raw = httpx.get(f"{api.client_url}/openapi.json").json()
    post = raw["paths"]["/transfers"]["post"]["responses"]
    put = raw["paths"]["/transfers/{transfer_id}"]["put"]["responses"]
    get = raw["paths"]["/transfers"]["get"]["responses"]
    assert {"413", "429", "431"} <= set(post)
    assert post["429"]["headers"]["Retry-After"]["required"] is True
    assert {"413", "431"} <= set(put) and "429" not in put  # the rate limit counts POSTs only
    assert "431" in get and "413" not in get
