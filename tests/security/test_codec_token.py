"""The codec endpoint with `MOJAFLOW_CODEC_AUTH=token`: for a Temporal Web UI elsewhere, which forwards its user's
access token. Only a valid JWT of the identity provider for the codec's audience, or an operator API key, gets
plaintext; anything else is 401 (a client's API key 403, a page on another origin 403), also from this machine.
CORS then allows credentials, for the exact UI origin only.

An API process of its own (tests/support/api_process.py) trusts the test identity provider (tests/support/oauth.py);
the payloads are a real transfer's, from its history on the session's Temporal server.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload, Payloads

from api.codec_server import TokenRequired, codec_router
from api.jwt_auth import Jwks, JwtValidator
from api.problems import install_problem_handlers
from mojaflow.codec import EncryptionCodec, load_payload_ring
from mojaflow.settings import Settings
from mojaflow.temporal import outbound_workflow_id
from tests.conftest import Stack
from tests.support.api_process import Api, api_process
from tests.support.auth import make_key
from tests.support.oauth import AUDIENCE, ISSUER, IdentityProvider
from tests.support.transfers import money_movement_headers, new_payer, transfer_body

UI_ORIGIN = "https://temporal.bank.example"
CODEC_AUDIENCE = "temporal-ui"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def api(stack: Stack, idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = idp.settings(
        MOJAFLOW_CODEC_AUTH="token", MOJAFLOW_CODEC_OAUTH_AUDIENCE=CODEC_AUDIENCE, MOJAFLOW_CODEC_CORS_ORIGINS=UI_ORIGIN
    )
    with api_process(stack, tmp_path_factory.mktemp("codec-token-api"), **settings) as running:
        yield running


@pytest.fixture(scope="module")
async def encrypted(stack: Stack) -> tuple[str, str]:
    """A real transfer's encrypted workflow input (as the Web UI posts it) and its transferId."""
    async with httpx.AsyncClient(timeout=30) as http:
        payer, _ = await new_payer(http, stack.cbs_url)
        headers = money_movement_headers()
        response = await http.post(
            f"{stack.api_url}/transfers", json=transfer_body(payer=payer),
            headers={**headers, "Prefer": "respond-async", "Authorization": f"Bearer {make_key(stack.env, 'bank1')}"},
        )  # fmt: skip
    assert response.status_code == 202, response.text
    transfer_id = response.json()["transferId"]
    handle = stack.client.get_workflow_handle(outbound_workflow_id("bank1", headers["idempotent_request_key"]))
    history = await handle.fetch_history()
    payloads = history.events[0].workflow_execution_started_event_attributes.input
    return json_format.MessageToJson(payloads), transfer_id


@pytest.fixture
async def plain() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def _decoded(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return base64.b64decode(response.json()["payloads"][0]["data"]).decode()


def _refused(response: httpx.Response, status: int, code: str, transfer_id: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert transfer_id not in response.text  # no plaintext


async def test_a_valid_token_or_an_operator_key_decodes_and_nothing_else_does(
    stack: Stack, api: Api, idp: IdentityProvider, encrypted: tuple[str, str], plain: httpx.AsyncClient
) -> None:
    body, transfer_id = encrypted
    url = f"{api.client_url}/codec/decode"
    operator_key = make_key(stack.env, "ops", operator=True, name="codec script")
    client_key = make_key(stack.env, "bank1", name="a client's key")

    async def decode(**headers: str) -> httpx.Response:
        return await plain.post(url, content=body, headers={"Origin": UI_ORIGIN, **headers})

    with_token = await decode(Authorization=f"Bearer {idp.token(sub='ui-user', audience=CODEC_AUDIENCE)}")
    with_operator_key = await plain.post(url, content=body, headers={"Authorization": f"Bearer {operator_key}"})
    with_operator_x_api_key = await plain.post(url, content=body, headers={"X-API-Key": operator_key})

    for answer in (with_token, with_operator_key, with_operator_x_api_key):
        assert transfer_id in _decoded(answer)

    nothing = await decode()
    client_api_token = await decode(Authorization=f"Bearer {idp.token(audience=AUDIENCE)}")
    expired = await decode(Authorization=f"Bearer {idp.token(audience=CODEC_AUDIENCE, issued_ago_s=900)}")
    other_issuer = await decode(Authorization=f"Bearer {idp.token(audience=CODEC_AUDIENCE, issuer='https://x/')}")
    garbage = await decode(Authorization="Bearer not-a-credential")
    clients_key = await decode(Authorization=f"Bearer {client_key}")
    unknown_key = await decode(Authorization="Bearer mf_0123456789ab_" + "A" * 43)
    elsewhere = await plain.post(
        url, content=body, headers={"Origin": "https://evil.example", "Authorization": f"Bearer {operator_key}"}
    )

    _refused(nothing, 401, "unauthorized", transfer_id)
    assert nothing.headers["www-authenticate"] == 'Bearer realm="mojaflow"'  # loopback alone is not enough now
    for answer, reason in (
        (client_api_token, "audience"), (expired, "expired"), (other_issuer, "issuer"), (garbage, "neither"),
        (unknown_key, "not valid"),
    ):  # fmt: skip
        _refused(answer, 401, "unauthorized", transfer_id)
        assert reason in answer.json()["detail"]
        assert answer.headers["www-authenticate"].endswith('error="invalid_token"')
    _refused(clients_key, 403, "operator_required", transfer_id)
    _refused(elsewhere, 403, "forbidden_origin", transfer_id)
    security = "\n".join(api.security_lines())
    assert "codec endpoint refused a caller from 127.0.0.1" in security
    assert client_key not in security and operator_key not in security


async def test_cors_allows_credentials_for_the_exact_ui_origin_only(
    api: Api, idp: IdentityProvider, encrypted: tuple[str, str], plain: httpx.AsyncClient
) -> None:
    body, _ = encrypted
    url = f"{api.client_url}/codec/decode"

    def preflight(origin: str) -> dict[str, str]:
        return {"Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace"}  # fmt: skip

    from_ui = await plain.options(url, headers=preflight(UI_ORIGIN))
    from_elsewhere = await plain.options(url, headers=preflight("https://evil.example"))
    posted = await plain.post(
        url, content=body,
        headers={"Origin": UI_ORIGIN, "Authorization": f"Bearer {idp.token(audience=CODEC_AUDIENCE)}"},
    )  # fmt: skip
    refused = await plain.post(url, content=body, headers={"Origin": UI_ORIGIN})
    transfers = await plain.options(f"{api.client_url}/transfers", headers=preflight(UI_ORIGIN))

    assert from_ui.status_code == 200
    assert from_ui.headers["access-control-allow-origin"] == UI_ORIGIN  # never `*` with credentials
    assert from_ui.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in from_ui.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in from_elsewhere.headers
    for answer in (posted, refused):  # the UI can read a refusal too
        assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in transfers.headers  # /transfers never answers CORS


async def test_a_caller_on_another_machine_with_a_valid_token_decodes(
    stack: Stack, idp: IdentityProvider, tmp_path: Path
) -> None:
    """Token mode answers wherever the UI runs (local mode refuses any address but loopback). A loopback test
    cannot come from another address: the app is called in process as if it had."""
    settings = Settings(data_dir=tmp_path, payload_key=SecretStr(stack.env["MOJAFLOW_PAYLOAD_KEY"]))
    codec = EncryptionCodec(load_payload_ring(settings))
    body = json_format.MessageToJson(Payloads(payloads=await codec.encode([Payload(data=b"25633333333")])))
    jwks = Jwks(idp.jwks_url, cache_s=300)
    guard = TokenRequired([UI_ORIGIN])
    guard.tokens = JwtValidator(jwks, issuer=ISSUER, audience=CODEC_AUDIENCE, algorithms=["RS256"], leeway_s=30)
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(codec_router(codec, [UI_ORIGIN], guard=guard))
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://mojaflow") as client:
            with_token = await client.post(
                "/codec/decode", content=body,
                headers={"Origin": UI_ORIGIN, "Authorization": f"Bearer {idp.token(audience=CODEC_AUDIENCE)}"},
            )  # fmt: skip
            without = await client.post("/codec/decode", content=body, headers={"Origin": UI_ORIGIN})
    finally:
        await jwks.aclose()

    assert _decoded(with_token) == "25633333333"
    assert without.status_code == 401 and "25633333333" not in without.text
