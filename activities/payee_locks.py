"""Party lookups for the same payee, one at a time (in this worker process).

SDK 18.0.2 resolves the payee of `POST /transfers` through a Redis pub/sub channel named after the party id. Two
lookups of the same party at the same moment break it: the second `PUT /parties` callback finds the channel's
callbacks already removed (`uncaughtException … cache.js:151`), and the SDK's subscription stays dead until it is
restarted: every later transfer times out. So `request_party` sends its `POST /transfers` only while it holds
this payee's lock, until the SDK has answered (the lookup is over then).

The lock is per worker process. Several workers against one SDK can still send two lookups for one payee at the
same moment; run one worker per SDK, or accept that risk (README, "Party lookups for one payee").

Locks are keyed by an HMAC of the party id under a key made per process: no party id is kept in memory for longer
than the call, and an entry goes away when nobody holds or awaits it.

    locks = PayeeLocks()
    async with locks.hold("MSISDN", "25633333333", None):
        ...  # the lookup
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mojaflow.inbound_models import party_key

__all__ = ["PayeeLocks"]


@dataclass
class _Entry:
    lock: asyncio.Lock
    users: int = 0  # holding or waiting


class PayeeLocks:
    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def hold(self, id_type: str, id_value: str, id_sub_value: str | None) -> AsyncIterator[None]:
        """Wait for this payee's lookups that started before, then hold the lock for the block."""
        key = party_key(self._key, id_type, id_value, id_sub_value)
        entry = self._entries.setdefault(key, _Entry(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    def __len__(self) -> int:
        """Payees with a lookup running or waiting."""
        return len(self._entries)
