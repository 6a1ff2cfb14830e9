"""Party lookups for one payee wait for each other; other payees' do not (activities/payee_locks.py). The real SDK's
side of it (10 concurrent transfers to one payee) is e2e/tests/test_concurrency.py."""

from __future__ import annotations

import asyncio

from activities.payee_locks import PayeeLocks


async def test_a_second_lookup_of_the_same_payee_waits_for_the_first() -> None:
    locks = PayeeLocks()
    first_inside, release_first = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def lookup(name: str, inside: asyncio.Event | None = None, release: asyncio.Event | None = None) -> None:
        async with locks.hold("MSISDN", "25633333333", None):
            order.append(f"{name} in")
            if inside is not None and release is not None:
                inside.set()
                await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(lookup("first", first_inside, release_first))
    await first_inside.wait()
    second = asyncio.create_task(lookup("second"))
    for _ in range(20):  # give the second every chance to get in: it must not
        await asyncio.sleep(0)
    assert order == ["first in"]
    assert len(locks) == 1

    release_first.set()
    await asyncio.gather(first, second)
    assert order == ["first in", "first out", "second in", "second out"]
    assert len(locks) == 0  # nothing kept once nobody holds or waits


async def test_lookups_of_other_payees_do_not_wait() -> None:
    locks = PayeeLocks()
    async with locks.hold("MSISDN", "25633333333", None):
        async with asyncio.timeout(1):
            async with locks.hold("MSISDN", "25633333334", None):
                pass
            async with locks.hold("MSISDN", "25633333333", "WALLET"):  # a sub-id is another party
                pass
            async with locks.hold("ACCOUNT_ID", "25633333333", None):
                pass
        assert len(locks) == 1


async def test_a_failed_lookup_frees_the_payee() -> None:
    locks = PayeeLocks()
    try:
        async with locks.hold("MSISDN", "25633333333", None):
            raise RuntimeError("the SDK went away")
    except RuntimeError:
        pass
    assert len(locks) == 0
    async with asyncio.timeout(1), locks.hold("MSISDN", "25633333333", None):
        pass
