"""Who may call the client API: API keys decide the client_key; a client reads and decides only its own transfers.

The matrix runs against the session's stack (real API process, keys made by the `mojaflow keys` command against
its database): no key, a wrong key, a revoked key → 401 with `WWW-Authenticate: Bearer`; another client's
transfer → 404 on GET and PUT; listings scoped; a client_key header that disagrees → 403; an operator key reads
all; `X-API-Key` works like `Authorization: Bearer`. Then the key store and the command on their own, CORS, and
who decided (the transfer's `decisions` and the audit log).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from mojaflow.api_keys import ApiKeyStore
from mojaflow.audit import audit_entries, record_action
from mojaflow.database import Database
from mojaflow.keys import load_secrets_ring, prepend_new_key
from mojaflow.settings import Settings
from tests.conftest import ROOT, Stack
from tests.support.auth import make_key
from tests.support.log_scan import records
from tests.support.process import ServerProcess, free_port
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state

KEY = re.compile(r"^mf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")
MANUAL = {"autoAcceptParty": False, "autoAcceptQuote": False}
UI_ORIGIN = "http://127.0.0.1:8233"


def _client_key() -> str:
    return f"c{uuid.uuid4().hex[:9]}"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key_id(key: str) -> str:
    return key.split("_")[1]


def _unauthorized(response: httpx.Response, *, invalid: bool) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is invalid


async def _no_workflow(stack: Stack, home_transaction_id: str) -> bool:
    return (await stack.client.count_workflows(f"HomeTransactionId = '{home_transaction_id}'")).count == 0


async def _start(
    stack: Stack, http: httpx.AsyncClient, key: str, client_key: str, *, manual: bool = False, **body: Any
) -> dict[str, Any]:
    payer, _ = await new_payer(http, stack.cbs_url)
    response = await http.post(
        f"{stack.api_url}/transfers",
        json=transfer_body(payer=payer, **(MANUAL if manual else {}), **body),
        headers={**money_movement_headers(client_key=client_key), **_bearer(key), "Prefer": "wait=15"},
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def owner(stack: Stack) -> tuple[str, str]:
    """A client and its key."""
    client_key = _client_key()
    return client_key, make_key(stack.env, client_key, name="owner")


@pytest.fixture(scope="module")
def stranger(stack: Stack) -> tuple[str, str]:
    client_key = _client_key()
    return client_key, make_key(stack.env, client_key, name="stranger")


# -- 401: no key, a wrong key, a revoked key, on every client route ------------------------------------------------


def _routes(transfer_id: str, client_key: str) -> list[tuple[str, str, dict[str, Any]]]:
    headers = money_movement_headers(client_key=client_key)
    return [
        ("POST", "/transfers", {"json": transfer_body(), "headers": headers}),
        ("PUT", f"/transfers/{transfer_id}", {"json": {"acceptParty": True}, "headers": headers}),
        ("GET", f"/transfers/{transfer_id}", {}),
        ("GET", "/transfers", {}),
    ]


@pytest.mark.parametrize(
    ("credential", "invalid"),
    [
        ({}, False),
        ({"Authorization": "Bearer mf_0123456789ab_" + "A" * 43}, True),  # well-formed, never made
        ({"X-API-Key": "mf_0123456789ab_" + "A" * 43}, True),
        ({"Authorization": "Bearer not-a-key"}, True),
        ({"Authorization": "Basic YmFuazE6c2VjcmV0"}, False),  # not a bearer credential: none sent
    ],
    ids=["no-key", "wrong-key", "wrong-x-api-key", "garbage", "basic"],
)
async def test_no_or_a_wrong_key_is_401_on_every_route_and_starts_nothing(
    stack: Stack, owner: tuple[str, str], credential: dict[str, str], invalid: bool
) -> None:
    client_key, key = owner
    async with httpx.AsyncClient(timeout=30) as http:  # no test credentials added
        transfer = await _start(stack, http, key, client_key, manual=True)
        for method, path, request in _routes(transfer["transferId"], client_key):
            headers = {**request.pop("headers", {}), **credential}
            response = await http.request(method, f"{stack.api_url}{path}", headers=headers, **request)
            _unauthorized(response, invalid=invalid)
            assert "mf_" not in response.text  # the credential is never echoed
            if method == "POST":
                assert await _no_workflow(stack, request["json"]["homeTransactionId"])
        current = await http.get(f"{stack.api_url}/transfers/{transfer['transferId']}", headers=_bearer(key))
    assert current.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"  # the PUT decided nothing


async def test_a_revoked_key_is_401_within_the_cache_time(stack: Stack) -> None:
    client_key = _client_key()
    key = make_key(stack.env, client_key)
    url = f"{stack.api_url}/transfers"
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(url, headers=_bearer(key))).status_code == 200  # and now it is cached

        revoked = subprocess.run(
            [sys.executable, "-m", "mojaflow.cli", "keys", "revoke", _key_id(key)], env=stack.env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        revoked_at = time.monotonic()
        cache_s = Settings().api_key_cache_s  # the stack runs with the default
        while (response := await http.get(url, headers=_bearer(key))).status_code == 200:
            assert time.monotonic() - revoked_at < cache_s + 2, "a revoked key still works after the cache time"
            await asyncio.sleep(0.2)
    _unauthorized(response, invalid=True)
    body = transfer_body()
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {**money_movement_headers(client_key=client_key), **_bearer(key)}
        post = await http.post(url, json=body, headers=headers)
    _unauthorized(post, invalid=True)
    assert await _no_workflow(stack, body["homeTransactionId"])


async def test_health_and_the_published_document_need_no_key(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(f"{stack.api_url}/health")).status_code == 200
        document = (await http.get(f"{stack.api_url}/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}
    assert "401" in document["paths"]["/transfers"]["post"]["responses"]
    assert "403" in document["paths"]["/transfers/{transfer_id}"]["put"]["responses"]


# -- scope: the credential's client_key ----------------------------------------------------------------------------


async def test_another_clients_transfer_is_404_on_get_and_put(
    stack: Stack, owner: tuple[str, str], stranger: tuple[str, str]
) -> None:
    (owner_key_name, owner_key), (stranger_client_key, stranger_key) = owner, stranger
    async with httpx.AsyncClient(timeout=30) as http:
        transfer = await _start(stack, http, owner_key, owner_key_name, manual=True)
        transfer_id = transfer["transferId"]
        own = await http.get(f"{stack.api_url}/transfers/{transfer_id}", headers=_bearer(owner_key))
        sdk_transfer_id = transfer["sdkTransferId"]
        by_sdk_id = await http.get(f"{stack.api_url}/transfers/{sdk_transfer_id}", headers=_bearer(stranger_key))
        foreign_get = await http.get(f"{stack.api_url}/transfers/{transfer_id}", headers=_bearer(stranger_key))
        foreign_put = await http.put(
            f"{stack.api_url}/transfers/{transfer_id}", json={"acceptParty": True},
            headers={**money_movement_headers(client_key=stranger_client_key), **_bearer(stranger_key)},
        )  # fmt: skip
        unknown = await http.get(f"{stack.api_url}/transfers/{uuid.uuid4()}", headers=_bearer(stranger_key))
        after = await http.get(f"{stack.api_url}/transfers/{transfer_id}", headers=_bearer(owner_key))

    assert own.status_code == 200
    unknown_id = unknown.url.path.rsplit("/", 1)[1]
    for foreign, requested in ((by_sdk_id, sdk_transfer_id), (foreign_get, transfer_id), (foreign_put, transfer_id)):
        assert foreign.status_code == 404, foreign.text
        # the very answer an id nobody has gets: no existence oracle
        assert foreign.json() == {**unknown.json(), "detail": unknown.json()["detail"].replace(unknown_id, requested)}
    assert after.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    assert after.json()["decisions"] == []


async def test_listings_are_scoped_to_the_caller_and_an_operator_reads_all(
    stack: Stack, owner: tuple[str, str], stranger: tuple[str, str]
) -> None:
    home = f"home-{uuid.uuid4()}"  # both clients' transfers share it, so each listing is small and exact
    operator = make_key(stack.env, _client_key(), operator=True, name="back office")
    async with httpx.AsyncClient(timeout=30) as http:
        mine = await _start(stack, http, owner[1], owner[0], homeTransactionId=home)
        theirs = await _start(stack, http, stranger[1], stranger[0], homeTransactionId=home)

        async def listed(key: str) -> set[str]:
            response = await http.get(
                f"{stack.api_url}/transfers", params={"homeTransactionId": home}, headers=_bearer(key)
            )
            assert response.status_code == 200, response.text
            return {item["transferId"] for item in response.json()["items"]}

        by_owner, by_stranger, by_operator = await listed(owner[1]), await listed(stranger[1]), await listed(operator)
        operator_reads = await http.get(f"{stack.api_url}/transfers/{theirs['transferId']}", headers=_bearer(operator))
        operator_decides = await http.put(
            f"{stack.api_url}/transfers/{theirs['transferId']}", json={"acceptParty": True},
            headers={**money_movement_headers(client_key=stranger[0]), **_bearer(operator)},
        )  # fmt: skip

    assert by_owner == {mine["transferId"]}
    assert by_stranger == {theirs["transferId"]}
    assert by_operator == {mine["transferId"], theirs["transferId"]}
    assert operator_reads.status_code == 200
    assert operator_decides.status_code == 403  # an operator reads all; it acts as its own client_key only
    assert operator_decides.json()["code"] == "client_key_mismatch"


async def test_a_client_key_header_that_disagrees_with_the_key_is_403(stack: Stack, owner: tuple[str, str]) -> None:
    client_key, key = owner
    async with httpx.AsyncClient(timeout=30) as http:
        transfer = await _start(stack, http, key, client_key, manual=True)
        body = transfer_body()
        answers = [
            await http.post(
                f"{stack.api_url}/transfers", json=body, headers={**money_movement_headers(), **_bearer(key)}
            ),  # money_movement_headers() says bank1
            await http.put(
                f"{stack.api_url}/transfers/{transfer['transferId']}",
                json={"acceptParty": True},
                headers={**money_movement_headers(client_key="bank1"), **_bearer(key)},
            ),  # fmt: skip
            await http.get(
                f"{stack.api_url}/transfers/{transfer['transferId']}", headers={"client_key": "bank1", **_bearer(key)}
            ),
        ]
        malformed = await http.post(
            f"{stack.api_url}/transfers", json=body,
            headers={**money_movement_headers(client_key="not valid"), **_bearer(key)},
        )  # fmt: skip

    for answer in answers:
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "client_key_mismatch"
    assert malformed.status_code == 400
    assert [error["field"] for error in malformed.json()["errors"]] == ["client_key"]
    assert await _no_workflow(stack, body["homeTransactionId"])


async def test_x_api_key_works_like_bearer(stack: Stack, owner: tuple[str, str]) -> None:
    client_key, key = owner
    async with httpx.AsyncClient(timeout=30) as http:
        payer, _ = await new_payer(http, stack.cbs_url)
        created = await http.post(
            f"{stack.api_url}/transfers", json=transfer_body(payer=payer),
            headers={**money_movement_headers(client_key=client_key), "X-API-Key": key},
        )  # fmt: skip
        read = await http.get(f"{stack.api_url}/transfers/{created.json()['transferId']}", headers={"X-API-Key": key})
        both_differ = await http.get(
            f"{stack.api_url}/transfers", headers={"X-API-Key": key, "Authorization": "Bearer " + "mf_0_x"}
        )

    assert created.status_code == 201, created.text
    assert read.status_code == 200 and read.json()["currentState"] == "COMPLETED"
    _unauthorized(both_differ, invalid=True)


# -- who decided -----------------------------------------------------------------------------------------------


async def test_each_decision_records_its_actor_on_the_transfer_and_in_the_audit_log(
    stack: Stack, owner: tuple[str, str]
) -> None:
    client_key, key = owner
    async with httpx.AsyncClient(timeout=30, headers=_bearer(key)) as http:
        transfer = await _start(stack, http, key, client_key, manual=True)
        transfer_id = transfer["transferId"]

        async def decide(body: dict[str, bool]) -> httpx.Response:
            return await http.put(
                f"{stack.api_url}/transfers/{transfer_id}", json=body,
                headers={**money_movement_headers(client_key=client_key), **_bearer(key), "Prefer": "wait=15"},
            )  # fmt: skip

        party = await decide({"acceptParty": True})
        quote = await decide({"acceptQuote": False})
        late = await decide({"acceptQuote": True})  # nothing awaits it any more: refused, and audited
        final = await wait_for_state(http, stack.api_url, transfer_id, {"ABORTED"})

    assert party.status_code == 200 and quote.status_code == 200, (party.text, quote.text)
    assert late.status_code == 409
    actor = f"api_key:{_key_id(key)}"
    assert [(d["state"], d["accepted"], d["actor"]) for d in final["decisions"]] == [
        ("WAITING_FOR_PARTY_ACCEPTANCE", True, actor),
        ("WAITING_FOR_QUOTE_ACCEPTANCE", False, actor),
    ]
    assert all(d["decidedAt"] for d in final["decisions"])

    database = Database(
        Settings(data_dir=stack.data_dir, database_url=stack.env.get("MOJAFLOW_DATABASE_URL")).resolved_database_url
    )
    try:
        entries = await audit_entries(database, transfer_id=transfer_id)
    finally:
        await database.close()
    assert [(e.actor, e.client_key, e.action) for e in entries] == [
        (actor, client_key, "accept_party"),
        (actor, client_key, "reject_quote"),
        (actor, client_key, "accept_quote"),
    ]
    assert entries[0].detail is not None and entries[0].detail.startswith("200 ")
    assert entries[2].detail is not None and "invalid_state" in entries[2].detail
    assert all(e.at is not None for e in entries)


# -- CORS: the codec endpoint only --------------------------------------------------------------------------------


async def test_cors_answers_for_the_codec_endpoint_only(stack: Stack) -> None:
    preflight = {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"}
    async with httpx.AsyncClient(timeout=30) as http:
        codec = await http.options(f"{stack.api_url}/codec/decode", headers=preflight)
        transfers = await http.options(f"{stack.api_url}/transfers", headers=preflight)
        transfer = await http.options(f"{stack.api_url}/transfers/{uuid.uuid4()}", headers=preflight)
        listing = await http.get(f"{stack.api_url}/transfers", headers={"Origin": UI_ORIGIN})

    assert codec.headers.get("access-control-allow-origin") == UI_ORIGIN
    for answer in (transfers, transfer, listing):
        assert "access-control-allow-origin" not in answer.headers, answer.headers
        assert answer.status_code in (401, 405), answer.text


# -- MOJAFLOW_AUTH=none -------------------------------------------------------------------------------------------


async def test_auth_none_warns_at_start_and_lets_the_client_key_header_decide(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {**stack.env, "MOJAFLOW_AUTH": "none", "MOJAFLOW_CLIENT_API_PORT": str(port),
           "MOJAFLOW_BACKEND_API_PORT": str(free_port())}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "api-auth-none.log"
    with ServerProcess("api-auth-none", [sys.executable, "-m", "api"], env=env, cwd=str(ROOT),
                       health_url=f"{url}/openapi.json", log_path=log).start():  # fmt: skip
        async with httpx.AsyncClient(timeout=30) as http:
            payer, _ = await new_payer(http, stack.cbs_url)
            client_key = _client_key()
            created = await http.post(
                f"{url}/transfers", json=transfer_body(payer=payer, **MANUAL),
                headers={**money_movement_headers(client_key=client_key), "Prefer": "wait=15"},
            )  # fmt: skip
            transfer_id = created.json()["transferId"]
            foreign = await http.put(
                f"{url}/transfers/{transfer_id}", json={"acceptParty": False},
                headers=money_movement_headers(client_key="bank1"),
            )  # fmt: skip
            own = await http.put(
                f"{url}/transfers/{transfer_id}", json={"acceptParty": False},
                headers={**money_movement_headers(client_key=client_key), "Prefer": "wait=15"},
            )  # fmt: skip

    assert created.status_code == 201, created.text
    assert foreign.status_code == 404
    assert own.status_code == 200, own.text
    assert own.json()["decisions"][0]["actor"] == "anonymous"
    warnings = [line["level"] for line in records(log) if "MOJAFLOW_AUTH=none" in line["event"]]
    assert warnings == ["warning"]


# -- the key store and the command --------------------------------------------------------------------------------


async def test_a_key_is_kept_as_an_hmac_only_and_verifies_in_constant_form(database: Database, tmp_path: Path) -> None:
    store = ApiKeyStore(database, load_secrets_ring(Settings(data_dir=tmp_path)))
    made = await store.create(client_key="bank1", name="core")
    other = await store.create(client_key="bank2", operator=True)

    async with database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM api_keys"))).all()
    secret = made.key.split("_", 2)[2]
    assert KEY.match(made.key) and len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert all(secret not in str(row) and made.key not in str(row) for row in rows)
    assert made.key not in repr(made)

    verified = await store.verify(made.key)
    assert verified is not None and (verified.client_key, verified.operator) == ("bank1", False)
    forged = f"mf_{made.stored.key_id}_{other.key.split('_', 2)[2]}"  # one key's id with another's secret
    assert await store.verify(forged) is None
    assert await store.verify(made.key[:-1] + ("A" if made.key[-1] != "A" else "B")) is None

    revoked = await store.revoke(made.stored.key_id)
    again = await store.revoke(made.stored.key_id)
    assert revoked is not None and again is not None and revoked.revoked_at == again.revoked_at
    assert await store.verify(made.key) is None
    assert await store.revoke("000000000000") is None
    assert (await store.verify(other.key)) is not None


async def test_keys_made_before_a_secrets_key_rotation_keep_working(database: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    before = await ApiKeyStore(database, load_secrets_ring(settings)).create(client_key="bank1")
    ring = prepend_new_key(tmp_path / "secrets.key", "MOJAFLOW_SECRETS_KEYS")
    store = ApiKeyStore(database, load_secrets_ring(settings))
    after = await store.create(client_key="bank1")

    assert len(ring.ids) == 2
    assert await store.verify(before.key) is not None
    assert await store.verify(after.key) is not None


async def test_the_audit_log_refuses_updates_and_deletes(database: Database) -> None:
    transfer_id = str(uuid.uuid4())
    await record_action(database, actor="cli", action="test", client_key="bank1", transfer_id=transfer_id)
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with database.engine.begin() as connection:
                await connection.execute(text(statement))
    assert [(entry.actor, entry.action) for entry in await audit_entries(database, transfer_id=transfer_id)] == [
        ("cli", "test")
    ]


def _keys_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "keys", *args], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_the_command_prints_a_key_once_lists_without_it_and_revokes(tmp_path: Path) -> None:
    env = {**os.environ, "MOJAFLOW_DATA_DIR": str(tmp_path)}

    created = _keys_command(env, "create", "--client-key", "bank1", "--name", "core banking")
    operator = _keys_command(env, "create", "--client-key", "bank", "--operator")
    listed = _keys_command(env, "list")

    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY.match(key) and created.stdout == key + "\n"  # stdout holds the key alone, for scripts
    key_id, secret = _key_id(key), key.split("_", 2)[2]
    assert key_id in created.stderr and secret not in created.stderr
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout + listed.stderr and key not in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if line.startswith(key_id))
    assert row.split()[:4] == [key_id, "bank1", "core", "banking"] and row.split()[-1] == "-"
    operator_row = next(line for line in listed.stdout.splitlines() if line.startswith(_key_id(operator.stdout)))
    assert " yes " in operator_row

    revoked = _keys_command(env, "revoke", key_id)
    relisted = _keys_command(env, "list")
    unknown = _keys_command(env, "revoke", "000000000000")
    bad = _keys_command(env, "create", "--client-key", "has space")

    assert revoked.returncode == 0, revoked.stderr
    row = next(line for line in relisted.stdout.splitlines() if line.startswith(key_id))
    assert row.split()[-1] != "-"  # a revocation time
    assert unknown.returncode == 1 and "no API key 000000000000" in unknown.stderr
    assert bad.returncode == 2 and "client_key must match" in bad.stderr and "Traceback" not in bad.stderr
    assert not list(tmp_path.glob("*api-key*"))  # no key file written by the command
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
