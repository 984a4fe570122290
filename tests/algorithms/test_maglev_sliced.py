"""Maglev rebuilds inside a running loop in slices: the old table serves until the new one is swapped in whole."""

from __future__ import annotations

import asyncio

import pytest

from kube_balance import Endpoint
from kube_balance.algorithms._maglev import SLICED_FROM, Maglev

SIZE = 20_011  # a prime >= SLICED_FROM
KEYS = [f"user-{i}" for i in range(2_000)]
MAX_TURNS = 100_000


def pool(n: int) -> list[Endpoint]:
    return [Endpoint(f"10.1.{i // 250}.{i % 250 + 1}", 8080) for i in range(n)]


def table_of(endpoints: list[Endpoint], **options: float) -> list[str]:
    """The owners a build at once gives (a first build is never sliced)."""
    maglev = Maglev(table_size=SIZE, **options)  # type: ignore[arg-type]
    maglev.update(endpoints)
    return maglev.owners()


def sliced(endpoints: list[Endpoint], **options: float) -> Maglev:
    maglev = Maglev(table_size=SIZE, **options)  # type: ignore[arg-type]
    maglev.update(endpoints)
    maglev.build_slice = 0.0  # one pause's worth per loop turn: the turn count does not depend on speed
    return maglev


async def test_removal_builds_in_slices_and_swaps_the_same_table_whole() -> None:
    """Removing one of 100: several loop turns pass, each sees the old or the final table, and the
    final table is the one a build at once gives."""
    assert SIZE >= SLICED_FROM
    endpoints = pool(100)
    maglev = sliced(endpoints)
    before = maglev.owners()
    maglev.remove(endpoints[37])
    expected = table_of(endpoints[:37] + endpoints[38:])
    turns = 0
    async with asyncio.timeout(30):
        while maglev.building and turns < MAX_TURNS:
            assert maglev.owners() in (before, expected), "a half-built table was visible"
            await asyncio.sleep(0)
            turns += 1
    assert not maglev.building
    assert turns > 10  # the loop ran between slices
    assert maglev.owners() == expected


@pytest.mark.parametrize("load_factor", [None, 1.25])
async def test_removed_endpoint_gets_no_traffic_while_the_new_table_builds(load_factor: float | None) -> None:
    """While the old table serves, keys of the removed endpoint go elsewhere and the others stay put."""
    endpoints = pool(50)
    maglev = sliced(endpoints, **({"load_factor": load_factor} if load_factor else {}))
    first = {}
    for key in KEYS:
        ep = maglev.get(key)
        maglev.put(ep)
        first[key] = ep
    gone = endpoints[7]
    maglev.remove(gone)
    assert maglev.building
    moved = 0
    for key in KEYS:
        ep = maglev.get(key)
        maglev.put(ep)
        assert ep != gone
        moved += ep != first[key]
    assert moved == sum(ep == gone for ep in first.values())  # only the removed endpoint's keys moved
    if load_factor is None:  # passing over a removed endpoint is not an overflow
        assert maglev.overflowed == 0
    assert maglev.building  # all of the above ran on the old table
    async with asyncio.timeout(30):
        for _ in range(MAX_TURNS):
            if not maglev.building:
                break
            await asyncio.sleep(0)
    assert not maglev.building and gone.key not in maglev.owners()


async def test_a_later_update_supersedes_a_build_in_progress() -> None:
    """Two removals in a row: the first build is dropped, the table ends as the final set's."""
    endpoints = pool(60)
    maglev = sliced(endpoints)
    maglev.remove(endpoints[1])
    await asyncio.sleep(0)
    maglev.remove(endpoints[2])
    maglev.add(Endpoint("10.9.9.9", 8080))
    async with asyncio.timeout(30):
        for _ in range(MAX_TURNS):
            if not maglev.building:
                break
            await asyncio.sleep(0)
    assert maglev.owners() == table_of([endpoints[0], *endpoints[3:], Endpoint("10.9.9.9", 8080)])


def test_updates_outside_a_loop_build_at_once() -> None:
    """Without a running loop the table is built during update(), as before."""
    endpoints = pool(20)
    maglev = Maglev(table_size=SIZE)
    maglev.update(endpoints)
    maglev.remove(endpoints[0])
    assert not maglev.building
    assert maglev.owners() == table_of(endpoints[1:])
