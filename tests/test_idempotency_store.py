"""What our database keeps of an idempotency key's request (api/idempotency.py): never a plain hash of a body that
holds party ids, only its HMAC under the party-hash ring; a replay is still recognised after a rotation of that
ring, and against a claim an earlier version stored unkeyed."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from api.errors import IdempotencyKeyReused
from api.idempotency import Idempotency, keyed_fingerprint, request_hash, transfers_key
from mojaflow.database import Database, idempotency_keys
from mojaflow.keys import KeyRing

BODY = {"from": {"idType": "MSISDN", "idValue": "25644444444"}, "to": {"idType": "MSISDN", "idValue": "25633333333"},
        "amount": "10.00", "currency": "USD"}  # fmt: skip
OLD_KEY, NEW_KEY = os.urandom(32), os.urandom(32)
BEFORE_ROTATION = KeyRing("MOJAFLOW_PARTY_HASH_KEYS", (("old", OLD_KEY),))
AFTER_ROTATION = KeyRing("MOJAFLOW_PARTY_HASH_KEYS", (("new", NEW_KEY), ("old", OLD_KEY)))


async def _stored(database: Database) -> list[str]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(select(idempotency_keys.c.request_hash))).scalars())


async def test_the_stored_fingerprint_is_keyed_and_a_replay_after_a_rotation_matches(database: Database) -> None:
    key = transfers_key("bank1", "key-1")

    first = await Idempotency(database, BEFORE_ROTATION).claim(key, request_hash(BODY), "transfer-1")
    replay = await Idempotency(database, AFTER_ROTATION).claim(key, request_hash(BODY), "transfer-2")

    assert first.created and (replay.created, replay.transfer_id) == (False, "transfer-1")
    assert await _stored(database) == [keyed_fingerprint(OLD_KEY, request_hash(BODY))]
    assert request_hash(BODY) not in await _stored(database)  # no plain hash a guess could be checked against
    with pytest.raises(IdempotencyKeyReused):
        await Idempotency(database, AFTER_ROTATION).claim(key, request_hash({**BODY, "amount": "11.00"}), "transfer-3")


async def test_a_claim_an_earlier_version_stored_unkeyed_still_recognises_its_replay(database: Database) -> None:
    await database.claim_idempotency_key(
        client_key="bank1", method="POST", route="/transfers", key="key-2", request_hash=request_hash(BODY),
        transfer_id="transfer-1",
    )  # fmt: skip
    idempotency = Idempotency(database, AFTER_ROTATION)

    replay = await idempotency.claim(transfers_key("bank1", "key-2"), request_hash(BODY), "transfer-2")

    assert (replay.created, replay.transfer_id) == (False, "transfer-1")
    with pytest.raises(IdempotencyKeyReused):
        await idempotency.claim(transfers_key("bank1", "key-2"), request_hash({**BODY, "amount": "9.00"}), "t-3")
