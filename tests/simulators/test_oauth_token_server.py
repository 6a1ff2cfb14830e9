"""The OAuth2 token server simulator over real HTTP: the client_credentials grant (RFC 6749 4.4) with client auth by
HTTP Basic or form fields, its errors, introspection (RFC 7662), expiry, revocation and its counters."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from tests.support.webhook_peers import Peer, oauth_token_server

TOKEN_CLIENT_SECRET = "tok-client-secret-0b7e4a"
ODD_CLIENT_SECRET = "s3c:r%t+/="


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = oauth_token_server(tmp_path_factory.mktemp("token-server"))
    with peer.process.start():
        yield peer


@pytest.fixture
def idp(server: Peer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.put("/_sim/config", json={}).raise_for_status()
        client.delete("/_sim/tokens").raise_for_status()
        client.post("/_sim/clients", json={"clientId": "bank1", "clientSecret": TOKEN_CLIENT_SECRET}).raise_for_status()
        yield client
        client.put("/_sim/config", json={})


def grant(idp: httpx.Client, *, basic: tuple[str, str] | None = None, **form: str) -> httpx.Response:
    form.setdefault("grant_type", "client_credentials")
    return idp.post("/token", data=form, auth=basic)


def introspect(idp: httpx.Client, token: str) -> dict[str, Any]:
    answer = idp.post("/introspect", data={"token": token})
    assert answer.status_code == 200
    return dict(answer.json())


def test_basic_client_auth_gets_an_opaque_bearer_token(idp: httpx.Client) -> None:
    answer = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET), scope="webhooks")

    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600 and token["scope"] == "webhooks"
    assert "." not in token["access_token"] and len(token["access_token"]) >= 32  # opaque, not a JWT
    seen = introspect(idp, token["access_token"])
    assert seen["active"] is True and seen["client_id"] == "bank1" and seen["scope"] == "webhooks"
    assert seen["exp"] > time.time() + 3500


def test_form_client_auth_gets_a_token_and_is_counted_as_such(idp: httpx.Client) -> None:
    answer = grant(idp, client_id="bank1", client_secret=TOKEN_CLIENT_SECRET)

    assert answer.status_code == 200
    tokens = idp.get("/_sim/tokens").json()
    assert tokens["issued"] == 1 and tokens["active"] == 1
    assert tokens["requests"] == [
        {"clientId": "bank1", "clientAuth": "form", "grantType": "client_credentials", "scope": None, "status": 200}
    ]


def test_basic_credentials_are_form_urlencoded_before_base64(idp: httpx.Client) -> None:
    client = {"clientId": "my client:1", "clientSecret": ODD_CLIENT_SECRET}
    idp.post("/_sim/clients", json=client).raise_for_status()
    encoded = base64.b64encode(f"{quote_plus('my client:1')}:{quote_plus(ODD_CLIENT_SECRET)}".encode()).decode()

    answer = idp.post(
        "/token", data={"grant_type": "client_credentials"}, headers={"authorization": f"Basic {encoded}"}
    )

    assert answer.status_code == 200, answer.text


def test_refusing_basic_leaves_form_fields_working(idp: httpx.Client) -> None:
    idp.put("/_sim/config", json={"refuseBasic": True}).raise_for_status()

    refused = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET))
    accepted = grant(idp, client_id="bank1", client_secret=TOKEN_CLIENT_SECRET)

    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert accepted.status_code == 200
    assert [(r["clientAuth"], r["status"]) for r in idp.get("/_sim/tokens").json()["requests"]] == [
        ("basic", 401),
        ("form", 200),
    ]


@pytest.mark.parametrize(
    ("call", "status", "error"),
    [
        ({"basic": ("bank1", "wrong")}, 401, "invalid_client"),
        ({"client_id": "bank1", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "nobody", "client_secret": TOKEN_CLIENT_SECRET}, 401, "invalid_client"),
        ({}, 401, "invalid_client"),
        ({"basic": ("bank1", TOKEN_CLIENT_SECRET), "client_id": "bank1"}, 400, "invalid_request"),
        ({"basic": ("bank1", TOKEN_CLIENT_SECRET), "grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"basic": ("bank1", TOKEN_CLIENT_SECRET), "grant_type": ""}, 400, "unsupported_grant_type"),
    ],
)
def test_rfc_6749_errors(idp: httpx.Client, call: dict[str, Any], status: int, error: str) -> None:
    answer = grant(idp, **call)

    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert ("www-authenticate" in answer.headers) == (status == 401 and "client_id" not in call)  # not for form


def test_a_json_body_or_a_missing_grant_type_is_an_invalid_request(idp: httpx.Client) -> None:
    as_json = idp.post("/token", json={"grant_type": "client_credentials"}, auth=("bank1", TOKEN_CLIENT_SECRET))
    no_grant = idp.post("/token", data={"scope": "x"}, auth=("bank1", TOKEN_CLIENT_SECRET))
    repeated = idp.post(
        "/token", content=b"grant_type=client_credentials&scope=a&scope=b", auth=("bank1", TOKEN_CLIENT_SECRET),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip

    assert [r.status_code for r in (as_json, no_grant, repeated)] == [400, 400, 400]
    assert {r.json()["error"] for r in (as_json, no_grant, repeated)} == {"invalid_request"}


def test_scopes_are_limited_to_the_clients(idp: httpx.Client) -> None:
    client = {"clientId": "narrow", "clientSecret": TOKEN_CLIENT_SECRET, "scopes": ["webhooks", "read"]}
    idp.post("/_sim/clients", json=client).raise_for_status()

    refused = grant(idp, basic=("narrow", TOKEN_CLIENT_SECRET), scope="webhooks admin")
    default = grant(idp, basic=("narrow", TOKEN_CLIENT_SECRET))

    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert default.json()["scope"] == "webhooks read"


def test_tokens_expire_after_expires_in(idp: httpx.Client) -> None:
    idp.put("/_sim/config", json={"expiresIn": 1}).raise_for_status()
    token = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET)).json()
    assert token["expires_in"] == 1 and introspect(idp, token["access_token"])["active"] is True

    deadline = time.monotonic() + 5
    while introspect(idp, token["access_token"])["active"]:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.05)
    assert idp.get("/_sim/tokens").json()["active"] == 0


def test_revoke_makes_current_tokens_inactive_and_new_ones_work(idp: httpx.Client) -> None:
    idp.post("/_sim/clients", json={"clientId": "bank2", "clientSecret": TOKEN_CLIENT_SECRET}).raise_for_status()
    first = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET)).json()["access_token"]
    other = grant(idp, basic=("bank2", TOKEN_CLIENT_SECRET)).json()["access_token"]

    assert idp.post("/_sim/revoke", json={"clientId": "bank1"}).json() == {"revoked": 1}
    second = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET)).json()["access_token"]

    assert introspect(idp, first) == {"active": False}
    assert introspect(idp, other)["active"] is True
    assert introspect(idp, second)["active"] is True
    assert introspect(idp, "never-issued") == {"active": False}
    assert idp.get("/_sim/tokens").json()["issued"] == 3


def test_a_token_endpoint_fault(idp: httpx.Client) -> None:
    idp.put("/_sim/config", json={"tokenStatus": 503}).raise_for_status()

    answer = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET))

    assert answer.status_code == 503 and answer.json()["error"] == "temporarily_unavailable"
    assert idp.get("/_sim/tokens").json()["issued"] == 0


@pytest.mark.parametrize(
    ("route", "method", "body", "named"),
    [
        ("/_sim/config", "PUT", {"expiresIn": 0}, "expiresIn"),
        ("/_sim/config", "PUT", {"refuseBasik": True}, "refuseBasik"),
        ("/_sim/clients", "POST", {"clientId": "x"}, "clientSecret"),
        ("/_sim/revoke", "POST", {"client": "x"}, "client"),
    ],
)
def test_bad_admin_input_is_a_400_naming_the_field(
    idp: httpx.Client, route: str, method: str, body: dict[str, Any], named: str
) -> None:
    answer = idp.request(method, route, json=body)

    assert answer.status_code == 400
    assert named in answer.json()["message"]


def test_clients_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    peer = oauth_token_server(tmp_path)
    with peer.process.start(), httpx.Client(base_url=peer.url, timeout=10) as idp:
        idp.post("/_sim/clients", json={"clientId": "bank1", "clientSecret": TOKEN_CLIENT_SECRET}).raise_for_status()
        token = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET)).json()["access_token"]
    with peer.process.start(), httpx.Client(base_url=peer.url, timeout=10) as idp:
        assert introspect(idp, token)["active"] is True
        assert grant(idp, client_id="bank1", client_secret=TOKEN_CLIENT_SECRET).status_code == 200


def test_no_secret_or_token_in_the_servers_log(server: Peer, idp: httpx.Client) -> None:
    token = grant(idp, basic=("bank1", TOKEN_CLIENT_SECRET)).json()["access_token"]
    introspect(idp, token)

    log = server.process.log_path.read_text()

    assert "POST /token -> 200" in log
    assert TOKEN_CLIENT_SECRET not in log and token not in log
