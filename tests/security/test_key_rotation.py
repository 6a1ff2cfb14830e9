"""Key rings that rotate, on real processes: an installation of our own (API and worker with their own data dir, so
the rings live there as `make run` keeps them, no key in the environment) on the session's Temporal server and
simulators. A transfer waiting across `mojaflow keys rotate-payload` and a restart completes, and its whole history
decodes through the codec endpoint, as the Web UI asks; `rotate-secrets` re-encrypts what our database holds; a
payload under a key id nobody holds is refused by name, never decoded with another key.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from mojaflow.codec import EncryptionCodec
from mojaflow.inbound_models import party_key
from mojaflow.keys import KeyRing, load_payload_ring, load_secrets_ring
from mojaflow.settings import Settings
from mojaflow.temporal import outbound_workflow_id
from tests.conftest import ROOT, Stack
from tests.inbound.flow import new_payee, notification, quote_request, switch_records, transfer_request
from tests.support.transfers import money_movement_headers, new_payer, transfer_body, wait_for_state

UI_ORIGIN = "http://127.0.0.1:8233"  # MOJAFLOW_CODEC_CORS_ORIGINS's default: the dev server's Web UI
FINAL = {"COMPLETED", "ABORTED", "ERROR_OCCURRED"}


def mojaflow_keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mojaflow keys ...` as an operator runs it, with the installation's settings."""
    return subprocess.run(
        [sys.executable, "-m", "mojaflow.cli", "keys", *args],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installation(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API and worker whose three rings are generated into their own data dir (no key setting at all); decisions
    may wait long enough for a rotation and two restarts."""
    data_dir = tmp_path_factory.mktemp("rings")
    with stack.sibling(
        data_dir, MOJAFLOW_DATA_DIR=str(data_dir), MOJAFLOW_PAYLOAD_KEY="", MOJAFLOW_ACCEPTANCE_TIMEOUT_S="120"
    ) as own:
        yield own


def restart(own: Stack) -> None:
    for process in (own.worker, own.api):
        process.stop()
        process.start()


async def history_payloads(client: Client, workflow_id: str) -> list[Payload]:
    """Every payload of the workflow's history (inputs, results, updates, failures...), as the server keeps it."""
    found: list[Payload] = []

    def walk(message: Message) -> None:
        if isinstance(message, Payload):
            found.append(message)
            return
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                values = [v for v in value.values() if isinstance(v, Message)]
            elif field.is_repeated:
                values = list(value)
            else:
                values = [value]
            for item in values:
                walk(item)

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    for event in history.events:
        walk(event)
    return found


async def decode_as_the_ui(http: httpx.AsyncClient, api_url: str, payloads: list[Payload]) -> httpx.Response:
    return await http.post(
        f"{api_url}/codec/decode",
        content=json_format.MessageToJson(Payloads(payloads=payloads)),
        headers={"Origin": UI_ORIGIN, "Content-Type": "application/json"},
    )


def sealed_key_ids(data_dir: Path) -> list[str]:
    """The key ids the sealed personal data of our database's transfers is under, read from the SQLite file."""
    with sqlite3.connect(data_dir / "mojaflow.db") as connection:
        rows = connection.execute("SELECT json_extract(resource, '$.sealed.keyId') FROM transfers").fetchall()
    return [row[0] for row in rows if row[0] is not None]


async def test_a_transfer_waiting_across_a_payload_key_rotation_completes_and_its_history_decodes(
    installation: Stack, stack: Stack, http: httpx.AsyncClient
) -> None:
    own = installation
    payer, _ = await new_payer(http, own.cbs_url)
    headers = money_movement_headers()
    started = await http.post(
        f"{own.api_url}/transfers",
        json=transfer_body(payer=payer, autoAcceptParty=False),
        headers={**headers, "Prefer": "wait=15"},
    )
    assert started.status_code == 201, started.text
    assert started.json()["currentState"] == "WAITING_FOR_PARTY_ACCEPTANCE"
    transfer_id = started.json()["transferId"]
    workflow_id = outbound_workflow_id(headers["client_key"], headers["idempotent_request_key"])
    before = load_payload_ring(Settings(data_dir=own.data_dir))

    rotated = mojaflow_keys(own.env, "rotate-payload")
    restart(own)
    decided = await http.put(
        f"{own.api_url}/transfers/{transfer_id}",
        json={"acceptParty": True},
        headers={**money_movement_headers(), "Prefer": "wait=15"},
    )
    done = await wait_for_state(http, own.api_url, transfer_id, FINAL)

    assert rotated.returncode == 0, rotated.stderr
    after = load_payload_ring(Settings(data_dir=own.data_dir))
    assert after.ids == [after.primary_id, *before.ids] and after.primary_id not in before.ids
    assert (own.data_dir / "payload.key").stat().st_mode & 0o777 == 0o600
    assert decided.status_code == 200, decided.text
    assert done["currentState"] == "COMPLETED"
    payloads = await history_payloads(stack.client, workflow_id)
    key_ids = {
        p.metadata["encryption-key-id"].decode() for p in payloads if p.metadata.get("encoding") == b"binary/encrypted"
    }
    assert key_ids == {before.primary_id, after.primary_id}  # written under both keys: before and after
    decoded = await decode_as_the_ui(http, own.api_url, payloads)
    assert decoded.status_code == 200, decoded.text
    plain = json_format.Parse(decoded.text, Payloads()).payloads
    assert len(plain) == len(payloads)
    assert not [p for p in plain if p.metadata.get("encoding") == b"binary/encrypted"]
    assert any(b"Test Payee" in p.data for p in plain)  # the party lookup's answer, written under the old key
    assert any(transfer_id.encode() in p.data and b"COMPLETED" in p.data for p in plain)  # the end, under the new


async def test_a_payload_of_a_key_id_the_ring_lacks_is_refused_naming_the_id_and_the_setting(
    installation: Stack, http: httpx.AsyncClient
) -> None:
    retired = KeyRing("MOJAFLOW_PAYLOAD_KEYS", (("retired-2025", os.urandom(32)),))
    [payload] = await EncryptionCodec(retired).encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"Ann"')])
    own_ring = load_payload_ring(Settings(data_dir=installation.data_dir))
    [ours] = await EncryptionCodec(own_ring).encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"Bob"')])
    forged = Payload(metadata={**ours.metadata, "encryption-key-id": b"retired-2025"}, data=ours.data)
    altered = Payload(metadata=ours.metadata, data=ours.data[:-1] + bytes([ours.data[-1] ^ 1]))

    refused = await decode_as_the_ui(http, installation.api_url, [payload])
    mislabelled = await decode_as_the_ui(http, installation.api_url, [forged])
    tampered = await decode_as_the_ui(http, installation.api_url, [altered])

    assert refused.status_code == 400
    assert refused.json()["code"] == "unknown_key_id"
    assert "'retired-2025'" in refused.json()["detail"]
    assert "MOJAFLOW_PAYLOAD_KEYS" in refused.json()["detail"]
    assert "Ann" not in refused.text
    assert mislabelled.status_code == 400  # our ciphertext under a foreign id: refused, not tried with our keys
    assert mislabelled.json()["code"] == "unknown_key_id"
    assert tampered.status_code == 400 and tampered.json()["code"] == "undecodable"  # GCM: never a wrong plaintext
    assert "Bob" not in mislabelled.text + tampered.text


async def test_rotate_secrets_re_encrypts_the_personal_data_our_database_holds(
    installation: Stack, http: httpx.AsyncClient
) -> None:
    own = installation
    payer, _ = await new_payer(http, own.cbs_url)
    started = await http.post(
        f"{own.api_url}/transfers",
        json=transfer_body(payer=payer),
        headers={**money_movement_headers(), "Prefer": "wait=15"},
    )
    assert started.status_code == 201, started.text
    transfer_id = started.json()["transferId"]
    await wait_for_state(http, own.api_url, transfer_id, {"COMPLETED"})
    subscribed = await http.post(
        f"{own.api_url}/webhooks/subscriptions",
        json={
            "url": "https://hooks.example.com/mojaflow",
            "eventTypes": ["moneymovementservices.payment.status_updated"],
            "auth": {"type": "basic", "username": "bank", "password": "rotate-me-please"},
        },
        headers=money_movement_headers(),
    )
    assert subscribed.status_code == 201, subscribed.text
    before = load_secrets_ring(Settings(data_dir=own.data_dir))
    assert set(sealed_key_ids(own.data_dir)) == {before.primary_id}

    rotated = mojaflow_keys(own.env, "rotate-secrets")
    read_by_a_running_api = (await http.get(f"{own.api_url}/transfers/{transfer_id}")).json()
    again = mojaflow_keys(own.env, "rotate-secrets", "--reencrypt-only")

    assert rotated.returncode == 0, rotated.stderr
    after = load_secrets_ring(Settings(data_dir=own.data_dir))
    assert after.ids == [after.primary_id, *before.ids]
    assert set(sealed_key_ids(own.data_dir)) == {after.primary_id}
    assert re.search(r"re-encrypted under \w+: [1-9]\d* transfers", rotated.stderr)
    assert read_by_a_running_api["payee"]["name"] == "Test Payee"  # it read the new key from the ring file
    assert re.search(r"[1-9]\d* webhook subscriptions", rotated.stderr)  # their secrets too
    assert again.returncode == 0 and ": 0 transfers, 0 inbound quotes, 0 webhook subscriptions" in again.stderr


async def test_a_quote_made_before_a_party_hash_rotation_still_matches_its_transfer(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    old, new = f"old:{base64.b64encode(old_key).decode()}", f"new:{base64.b64encode(new_key).decode()}"
    with stack.sibling(tmp_path, MOJAFLOW_DATA_DIR=str(tmp_path), MOJAFLOW_PARTY_HASH_KEYS=old) as own:
        payee = await new_payee(http, own.cbs_url)
        quote = await http.post(f"{own.backend_url}/quoterequests", json=quote_request(payee))
        assert quote.status_code == 200, quote.text
        own.env["MOJAFLOW_PARTY_HASH_KEYS"] = f"{new},{old}"  # the API's environment, as an operator sets it
        own.api.stop()
        own.api.start()
        later = await http.post(f"{own.backend_url}/quoterequests", json=quote_request(payee))
        reserved = await http.post(f"{own.backend_url}/transfers", json=transfer_request(payee, quote.json()))
        transfer_id = quote.json()["transactionId"]
        await switch_records(http, own.sdk_url, transfer_id, "COMMITTED")
        notified = await http.put(
            f"{own.backend_url}/transfers/{transfer_id}", json=notification(transfer_id, "COMMITTED")
        )
        done = await wait_for_state(http, own.api_url, transfer_id, {"COMMITTED", "ABORTED", "ERROR_OCCURRED"})

    payee_keys = _saved_payee_keys(tmp_path)
    assert payee_keys[quote.json()["quoteId"]] == party_key(old_key, "MSISDN", payee.msisdn, None)
    assert payee_keys[later.json()["quoteId"]] == party_key(new_key, "MSISDN", payee.msisdn, None)  # rotated
    assert reserved.status_code == 200, reserved.text
    assert reserved.json()["transferState"] == "RESERVED"  # matched under the old key, by the rotated API
    assert notified.status_code in (200, 204), notified.text
    assert done["currentState"] == "COMMITTED"


def _saved_payee_keys(data_dir: Path) -> dict[str, str]:
    with sqlite3.connect(data_dir / "mojaflow.db") as connection:
        rows = connection.execute("SELECT quote_id, json_extract(quote, '$.payee_key') FROM inbound_quotes").fetchall()
    return dict(rows)


def test_rotation_of_a_ring_set_in_the_environment_writes_nothing_and_says_what_to_set(tmp_path: Path) -> None:
    current = base64.b64encode(os.urandom(32)).decode()
    env = {"MOJAFLOW_DATA_DIR": str(tmp_path), "MOJAFLOW_PAYLOAD_KEY": current}

    result = mojaflow_keys(env, "rotate-payload")

    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "payload.key").exists()
    steps = re.findall(r'MOJAFLOW_PAYLOAD_KEYS="([^"]+)"', result.stdout)
    assert len(steps) == 2 and "unset MOJAFLOW_PAYLOAD_KEY" in result.stdout
    rings = [_ring_of(step.replace("$MOJAFLOW_PAYLOAD_KEY", current)) for step in steps]
    legacy = EncryptionCodec(base64.b64decode(current)).key_id.decode()  # the id an earlier version recorded
    new = rings[1].primary_id
    assert rings[0].ids == [legacy, new]  # step 1: the new key decrypts only
    assert rings[1].ids == [new, legacy]  # step 2: it encrypts; the old one still decrypts
    assert current not in result.stdout  # the current key is never printed, only referred to


async def test_histories_of_an_earlier_one_key_version_decode_with_the_ring() -> None:
    old = os.urandom(32)
    [earlier] = await EncryptionCodec(old).encode([Payload(metadata={"encoding": b"json/plain"}, data=b"{}")])
    ring = _ring_of(f"new:{base64.b64encode(os.urandom(32)).decode()},{base64.b64encode(old).decode()}")

    [decoded] = await EncryptionCodec(ring).decode([earlier])

    assert decoded.data == b"{}"


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ("k1:c2hvcnQ=", "entry 1 (k1): a key must be base64 of 32 random bytes"),
        ("k 1:" + "A" * 44, "entry 1 must be id:base64"),
        ("k1:{key},k1:{key}", "key id 'k1' appears twice"),
    ],
)
def test_a_malformed_ring_is_refused_naming_the_setting_never_the_key(ring: str, message: str) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(ValueError) as refused:
        _ring_of(ring.format(key=key))
    assert str(refused.value).startswith("MOJAFLOW_PAYLOAD_KEYS") and message in str(refused.value)
    assert key not in str(refused.value) and "c2hvcnQ=" not in str(refused.value)


def _ring_of(value: str) -> KeyRing:
    """The payload ring a process would load from `MOJAFLOW_PAYLOAD_KEYS=value` (the same validators run)."""
    return load_payload_ring(Settings.model_validate({"payload_keys": value}))
