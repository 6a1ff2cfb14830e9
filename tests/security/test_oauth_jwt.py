"""OAuth2 bearer tokens on the client API: a JWT of the configured identity provider works like an API key, its
claim decides the client_key and its `sub` the actor; any other token is 401 and starts nothing.

An API process of its own (tests/support/api_process.py, on the session's stack) trusts a real JWKS server on
127.0.0.1 (tests/support/oauth.py) serving keys generated here. Valid tokens start, read and decide transfers;
expired, not yet valid, forged, wrong audience or issuer, unknown kid, `alg: none`, HS256 made with the public key,
no or a malformed client_key claim → 401 `invalid_token` naming why; a claim that disagrees with the client_key
header → 403; another client's transfer → 404; an operator scope reads all. The JWKS is fetched once, not per
request, and a key rotation at the provider (new kid) is picked up (this module's last test: it rotates).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.jwt_auth import REFETCH_COOLDOWN_S, InvalidToken, Jwks
from mojaflow.audit import audit_entries
from mojaflow.database import Database
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.support.api_process import Api, api_process
from tests.support.auth import make_key
from tests.support.oauth import (
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    generate_unpublished_key,
    hmac_token,
    unsigned_token,
)
from tests.support.transfers import money_movement_headers, new_payer, transfer_body

MANUAL = {"autoAcceptParty": False, "autoAcceptQuote": False}
OPERATOR_SCOPE = "mojaflow:operator"


def _client_key() -> str:
    return f"t{uuid.uuid4().hex[:9]}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def api(stack: Stack, idp: IdentityProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = idp.settings(MOJAFLOW_OAUTH_OPERATOR_SCOPE=OPERATOR_SCOPE)
    with api_process(stack, tmp_path_factory.mktemp("oauth-api"), **settings) as running:
        yield running


@pytest.fixture
async def plain() -> AsyncIterator[httpx.AsyncClient]:
    """No credential added: each request sends its own."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _no_workflow(stack: Stack, home_transaction_id: str) -> bool:
    return (await stack.client.count_workflows(f"HomeTransactionId = '{home_transaction_id}'")).count == 0


async def _start(
    stack: Stack, http: httpx.AsyncClient, url: str, token: str, client_key: str, **body: Any
) -> dict[str, Any]:
    payer, _ = await new_payer(http, stack.cbs_url)
    response = await http.post(
        f"{url}/transfers", json=transfer_body(payer=payer, **MANUAL, **body),
        headers={**money_movement_headers(client_key=client_key), **_bearer(token), "Prefer": "wait=15"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def _invalid_token(response: httpx.Response, token: str) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="mojaflow", error="invalid_token"'
    signature = token.split(".")[-1]
    assert token not in response.text and (len(signature) < 16 or signature[:16] not in response.text)
    return str(response.json()["detail"])


# -- tokens that work ----------------------------------------------------------------------------------------------


async def test_a_valid_token_decides_the_client_key_and_the_actor(
    stack: Stack, api: Api, idp: IdentityProvider, plain: httpx.AsyncClient
) -> None:
    client_key = _client_key()
    token = idp.token(sub="alice@bank.example", client_key=client_key)
    transfer = await _start(stack, plain, api.client_url, token, client_key)
    transfer_id = transfer["transferId"]

    decided = await plain.put(
        f"{api.client_url}/transfers/{transfer_id}", json={"acceptParty": False},
        headers={**money_movement_headers(client_key=client_key), **_bearer(token), "Prefer": "wait=15"},
    )  # fmt: skip
    read = await plain.get(f"{api.client_url}/transfers/{transfer_id}", headers=_bearer(token))
    listed = await plain.get(
        f"{api.client_url}/transfers", params={"homeTransactionId": transfer["homeTransactionId"]},
        headers=_bearer(token),
    )  # fmt: skip
    with_the_clients_key = await plain.get(
        f"{api.client_url}/transfers/{transfer_id}", headers=_bearer(make_key(stack.env, client_key))
    )

    assert decided.status_code == 200, decided.text
    assert read.status_code == 200 and read.json()["currentState"] == "ABORTED"
    assert [(d["accepted"], d["actor"]) for d in read.json()["decisions"]] == [(False, "token:alice@bank.example")]
    assert [item["transferId"] for item in listed.json()["items"]] == [transfer_id]
    assert with_the_clients_key.status_code == 200  # the token's client_key owns it, whatever the credential
    database = Database(Settings(data_dir=stack.data_dir, database_url=stack.env.get("MOJAFLOW_DATABASE_URL"))
                        .resolved_database_url)  # fmt: skip
    try:
        entries = await audit_entries(database, transfer_id=transfer_id)
    finally:
        await database.close()
    assert [(e.actor, e.client_key, e.action) for e in entries] == [
        ("token:alice@bank.example", client_key, "reject_party")
    ]


async def test_a_token_within_the_leeway_works_and_an_audience_list_holding_ours_too(
    api: Api, idp: IdentityProvider, plain: httpx.AsyncClient
) -> None:
    just_expired = idp.token(lifetime_s=300, issued_ago_s=310)  # expired 10 s ago; the leeway is 30 s
    about_to_start = idp.token(not_before_in_s=10)
    several_audiences = idp.token(audience=["another-api", AUDIENCE])
    for token in (just_expired, about_to_start, several_audiences):
        response = await plain.get(f"{api.client_url}/transfers", headers=_bearer(token))
        assert response.status_code == 200, response.text


# -- tokens that do not ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refused_tokens(idp: IdentityProvider) -> dict[str, tuple[str, str]]:
    """name → (token, what the 401's detail says)"""
    published = idp.signing
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "client_key": "bank1", "exp": int(time.time()) + 900}
    return {
        "expired": (idp.token(lifetime_s=300, issued_ago_s=400), "expired"),
        "not-yet-valid": (idp.token(not_before_in_s=120), "not valid yet"),
        "forged-signature": (idp.token(key=generate_unpublished_key(kid=published.kid)), "signature does not verify"),
        "wrong-audience": (idp.token(audience="another-api"), "audience"),
        "wrong-issuer": (idp.token(issuer="https://evil.example/"), "issuer"),
        "unknown-kid": (idp.token(key=generate_unpublished_key()), "key id"),
        "alg-none": (unsigned_token(claims, kid=str(published.kid)), "algorithm"),
        "hs256-with-the-public-key": (hmac_token(claims, published.as_pem(private=False), str(published.kid)), "alg"),
        "no-client-key-claim": (idp.token(client_key=None), "client_key"),
        "malformed-client-key-claim": (idp.token(client_key="bank 1"), "client_key"),
        "no-subject": (idp.token(sub=""), "sub"),
        "not-a-jwt": ("a.b.c", "well-formed"),
    }


REFUSED = [
    "expired", "not-yet-valid", "forged-signature", "wrong-audience", "wrong-issuer", "unknown-kid", "alg-none",
    "hs256-with-the-public-key", "no-client-key-claim", "malformed-client-key-claim", "no-subject", "not-a-jwt",
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSED)
async def test_a_token_that_is_not_valid_is_401_naming_why_and_starts_nothing(
    stack: Stack, api: Api, refused_tokens: dict[str, tuple[str, str]], plain: httpx.AsyncClient, case: str
) -> None:
    token, reason = refused_tokens[case]
    body = transfer_body()

    posted = await plain.post(
        f"{api.client_url}/transfers", json=body, headers={**money_movement_headers(), **_bearer(token)}
    )
    read = await plain.get(f"{api.client_url}/transfers", headers=_bearer(token))

    assert reason in _invalid_token(posted, token)
    assert reason in _invalid_token(read, token)
    assert await _no_workflow(stack, body["homeTransactionId"])


async def test_a_token_on_the_api_without_oauth_is_401(stack: Stack, idp: IdentityProvider) -> None:
    token = idp.token()
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{stack.api_url}/transfers", headers=_bearer(token))
    _invalid_token(response, token)


async def test_a_client_key_header_other_than_the_claim_is_403(
    stack: Stack, api: Api, idp: IdentityProvider, plain: httpx.AsyncClient
) -> None:
    token = idp.token(client_key=_client_key())
    body = transfer_body()

    response = await plain.post(
        f"{api.client_url}/transfers", json=body,
        headers={**money_movement_headers(client_key=_client_key()), **_bearer(token)},
    )  # fmt: skip

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "client_key_mismatch"
    assert await _no_workflow(stack, body["homeTransactionId"])


async def test_another_clients_transfer_is_404_and_an_operator_scope_reads_all(
    stack: Stack, api: Api, idp: IdentityProvider, plain: httpx.AsyncClient
) -> None:
    owner, stranger = _client_key(), _client_key()
    owner_token = idp.token(sub="owner", client_key=owner)
    transfer = await _start(stack, plain, api.client_url, owner_token, owner)
    url = f"{api.client_url}/transfers/{transfer['transferId']}"

    foreign = await plain.get(url, headers=_bearer(idp.token(sub="someone", client_key=stranger)))
    foreign_put = await plain.put(
        url, json={"acceptParty": True},
        headers={**money_movement_headers(client_key=stranger), **_bearer(idp.token(client_key=stranger))},
    )  # fmt: skip
    operator = await plain.get(
        url, headers=_bearer(idp.token(sub="back-office", client_key=stranger, scope=f"openid {OPERATOR_SCOPE}"))
    )
    operator_scp = await plain.get(url, headers=_bearer(idp.token(client_key=stranger, scp=[OPERATOR_SCOPE])))
    other_scope = await plain.get(url, headers=_bearer(idp.token(client_key=stranger, scope="openid profile")))

    assert (foreign.status_code, foreign.json()["code"]) == (404, "transfer_not_found")
    assert foreign_put.status_code == 404
    assert operator.status_code == 200 and operator_scp.status_code == 200
    assert other_scope.status_code == 404


async def test_the_settings_refuse_unsafe_token_configurations() -> None:
    base = {"oauth_jwks_url": "https://idp.example/jwks", "oauth_issuer": ISSUER, "oauth_audience": AUDIENCE}
    for bad, message in (
        ({"oauth_algorithms": "RS256,HS256"}, "HS256"),
        ({"oauth_algorithms": "none"}, "none"),
        ({"oauth_jwks_url": "http://idp.example/jwks"}, "https://"),
        ({"oauth_audience": None}, "MOJAFLOW_OAUTH_AUDIENCE"),
        ({"codec_auth": "token", "codec_cors_origins": "*"}, "exact origins"),
    ):
        with pytest.raises(ValidationError, match=message):
            Settings(_env_file=None, **{**base, **bad})  # type: ignore[arg-type]
    assert Settings(_env_file=None, **base).oauth_algorithms == ["RS256", "ES256"]  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_jwks_cache_keeps_its_keys_while_the_provider_is_down_and_never_asks_per_request() -> None:
    with IdentityProvider() as provider:
        clock = Clock()
        jwks = Jwks(provider.jwks_url, cache_s=300, clock=clock)
        try:
            kid = str(provider.signing.kid)
            assert (await jwks.key(kid)).kid == kid and provider.fetches == 1
            for _ in range(5):
                await jwks.key(kid)
            assert provider.fetches == 1  # cached

            provider.failing = True
            clock.now += 301  # the cache is stale: one fetch, which fails, and the last keys stay in use
            assert (await jwks.key(kid)).kid == kid and provider.fetches == 2
            assert (await jwks.key(kid)).kid == kid and provider.fetches == 2  # not again within the cooldown
            clock.now += REFETCH_COOLDOWN_S
            assert (await jwks.key(kid)).kid == kid and provider.fetches == 3

            provider.failing = False
            new = provider.add_key()  # published beside the old one
            clock.now += REFETCH_COOLDOWN_S
            assert (await jwks.key(str(new.kid))).kid == new.kid and provider.fetches == 4
        finally:
            await jwks.aclose()

    with IdentityProvider() as down:
        down.failing = True
        clock = Clock()
        jwks = Jwks(down.jwks_url, cache_s=300, clock=clock)
        try:
            for _ in range(3):
                with pytest.raises(InvalidToken, match="could not be fetched"):
                    await jwks.key(str(down.signing.kid))
            assert down.fetches == 1  # a provider down from the start is not asked per request either
        finally:
            await jwks.aclose()


# -- the JWKS: fetched once, refetched on a new kid, never per request (last: it rotates the provider's key) -----


async def test_the_jwks_is_not_fetched_per_request_and_a_rotation_is_picked_up(
    api: Api, idp: IdentityProvider, plain: httpx.AsyncClient
) -> None:
    old = idp.token(sub="before-rotation")
    assert (await plain.get(f"{api.client_url}/transfers", headers=_bearer(old))).status_code == 200
    fetches = idp.fetches
    answers = await asyncio.gather(
        *(plain.get(f"{api.client_url}/transfers", headers=_bearer(old)) for _ in range(10)),
        *(plain.get(f"{api.client_url}/transfers", headers=_bearer(idp.token(key=generate_unpublished_key())))
          for _ in range(10)),
    )  # fmt: skip
    assert [answer.status_code for answer in answers] == [200] * 10 + [401] * 10
    assert idp.fetches - fetches <= 1, "unknown kids made the API fetch the JWKS more than once per cooldown"

    idp.rotate()
    new = idp.token(sub="after-rotation")
    deadline = time.monotonic() + 15  # the refetch cooldown is 5 s (api.jwt_auth.REFETCH_COOLDOWN_S)
    while (answer := await plain.get(f"{api.client_url}/transfers", headers=_bearer(new))).status_code != 200:
        assert answer.status_code == 401, answer.text
        assert time.monotonic() < deadline, "the provider's new key was never picked up"
        await asyncio.sleep(0.5)
    retired = await plain.get(f"{api.client_url}/transfers", headers=_bearer(old))
    assert "key id" in _invalid_token(retired, old)  # the old key is no longer published
