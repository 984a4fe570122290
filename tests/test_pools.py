"""Per-endpoint pools and leases off the normal path: shared endpoints, finalizers, stopped loops."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from kube_balance._balancer import LoadBalancer
from kube_balance._dispatch import Dispatcher, Lease
from kube_balance._outcome import Outcome
from kube_balance._pools import FALLBACK_KEY, PoolSet
from kube_balance.discovery.static import StaticSource

A, B = "10.0.0.1:80", "10.0.0.2:80"


class Pool:
    """A stand-in connection pool that counts its closes."""

    def __init__(self) -> None:
        self.closes = 0


async def close(pool: Pool) -> None:
    pool.closes += 1


class Adapter:
    """The dispatcher's view of a client whose pools are :class:`Pool` objects (no attempts here)."""

    def __init__(self, close_fn: Any = close) -> None:
        self.close_fn = close_fn

    def open_pool(self) -> Pool:
        return Pool()

    async def close_pool(self, pool: Pool) -> None:
        await self.close_fn(pool)

    async def attempt(self, lease: Lease[Pool], request: None) -> int:  # pragma: no cover - unused
        raise NotImplementedError

    def classify(self, exc: BaseException) -> Any:  # pragma: no cover - unused
        raise NotImplementedError

    def status(self, result: int) -> int:  # pragma: no cover - unused
        return result

    def retry_after(self, result: int) -> float | None:  # pragma: no cover - unused
        return None

    async def discard(self, result: int) -> None:  # pragma: no cover - unused
        return None

    def explain(self, exc: Exception, attempts: Any, request: None) -> None:  # pragma: no cover
        return None


D = Dispatcher[Pool, None, int]


def make(keys: list[str], rng: random.Random, **kwargs: Any) -> tuple[D, LoadBalancer, StaticSource]:
    source = StaticSource(keys)
    lb = LoadBalancer("web.shop:80", source=source, algorithm="round_robin", rng=rng)
    adapter = Adapter(kwargs.pop("close_pool", close))
    return Dispatcher(lb, adapter, **kwargs), lb, source


async def shut(d: D, lb: LoadBalancer) -> None:
    async with asyncio.timeout(1):
        await d.aclose()
        await lb.aclose()


# -- PoolSet on its own ----------------------------------------------------------------------------
async def test_poolset_two_leases_on_a_removed_endpoint_close_its_pool_on_the_second_release() -> None:
    """Two leases on one retired endpoint: the first give_back keeps the pool, the second closes it."""
    pools: PoolSet[Pool] = PoolSet(Pool, close)
    first, second = pools.take(A), pools.take(A)
    assert first is second and pools.inflight == {A: 2}
    pools.on_eligible([B])
    assert pools.retired == {A}
    pools.give_back(A)
    async with asyncio.timeout(1):
        await pools.drained()
    assert pools.pools == {A: first} and pools.inflight == {A: 1} and first.closes == 0
    pools.give_back(A)
    async with asyncio.timeout(1):
        await pools.drained()
    assert pools.pools == {} and pools.inflight == {} and pools.retired == set() and first.closes == 1


async def test_poolset_idle_pool_of_a_removed_endpoint_closes_at_once() -> None:
    """A pool with no lease closes as soon as its endpoint leaves; the fallback pool never does."""
    pools: PoolSet[Pool] = PoolSet(Pool, close)
    a, fallback = pools.take(A), pools.take(FALLBACK_KEY)
    pools.give_back(A)
    pools.give_back(FALLBACK_KEY)
    assert pools.inflight == {}
    pools.on_eligible([])
    async with asyncio.timeout(1):
        await pools.drained()
    assert a.closes == 1 and fallback.closes == 0 and pools.pools == {FALLBACK_KEY: fallback}
    assert pools.retired == set()


def test_poolset_give_back_of_a_key_never_taken_counts_nothing() -> None:
    """A stray give_back leaves no count behind (a later take starts from one lease)."""
    pools: PoolSet[Pool] = PoolSet(Pool, close)
    pools.give_back(A)
    assert pools.inflight == {}
    pools.take(A)
    assert pools.inflight == {A: 1}


async def test_poolset_warns_when_a_pool_close_fails(caplog: pytest.LogCaptureFixture) -> None:
    """A close_pool that raises is logged as a warning with its traceback, and the close is done."""

    async def broken_close(pool: Pool) -> None:
        raise OSError("socket already gone")

    pools: PoolSet[Pool] = PoolSet(Pool, broken_close)
    pools.take(A)
    pools.give_back(A)
    with caplog.at_level(logging.WARNING, logger="kube_balance"):
        pools.on_eligible([])
        async with asyncio.timeout(1):
            await pools.drained()
    records = [r for r in caplog.records if "closing a drained endpoint pool failed" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].exc_info is not None and isinstance(records[0].exc_info[1], OSError)
    assert pools.pools == {}


def test_poolset_retiring_without_a_running_loop_hands_the_close_to_the_pools_loop() -> None:
    """A last release outside the loop (stopped, not closed) schedules the close on that loop."""
    loop = asyncio.new_event_loop()
    try:
        pools: PoolSet[Pool] = PoolSet(Pool, close)
        pools.loop = loop
        pool = pools.take(A)
        pools.on_eligible([])
        pools.give_back(A)  # no running loop here
        assert A not in pools.pools and pool.closes == 0
        loop.run_until_complete(asyncio.wait_for(_settle(pools), 1))
        assert pool.closes == 1
    finally:
        loop.close()


def test_poolset_retiring_after_the_loop_closed_drops_the_pool() -> None:
    """With the pools' loop closed there is nothing to close on: the pool is dropped, no error."""
    loop = asyncio.new_event_loop()
    loop.close()
    pools: PoolSet[Pool] = PoolSet(Pool, close)
    pools.loop = loop
    pool = pools.take(A)
    pools.on_eligible([])
    pools.give_back(A)
    assert pools.pools == {} and pools.inflight == {} and pool.closes == 0


async def _settle(pools: PoolSet[Pool]) -> None:
    """Let callbacks scheduled from outside run, then wait for the closes they start."""
    for _ in range(3):
        await asyncio.sleep(0)
    await pools.drained()


# -- through the Dispatcher ---------------------------------------------------------------------------
async def test_leases_on_an_eligible_endpoint_are_counted_down_one_by_one(rng: random.Random) -> None:
    """Releasing one of two leases on an endpoint that stays leaves one in flight, then none; its
    pool stays open for the next request."""
    d, lb, _ = make([A], rng)
    async with asyncio.timeout(1):
        first = await d.acquire()
        second = await d.acquire()
    first.release()
    assert d.inflight(A) == 1 and d.pools.get(A) is second.pool
    second.release()
    assert d.inflight(A) == 0 and d.pools.get(A) is second.pool and second.pool.closes == 0
    await shut(d, lb)


async def test_two_leases_on_one_removed_endpoint_keep_its_pool_until_both_are_released(
    rng: random.Random,
) -> None:
    """The pool of a removed endpoint stays open while a second lease still uses it."""
    d, lb, source = make([A], rng)
    async with asyncio.timeout(1):
        first = await d.acquire()
        second = await d.acquire()
    assert first.pool is second.pool and d.inflight(A) == 2
    source.set([B])
    first.release()
    async with asyncio.timeout(1):
        await d.drained()
    assert d.pools.get(A) is second.pool and second.pool.closes == 0 and d.inflight(A) == 1
    second.release()
    async with asyncio.timeout(1):
        await d.drained()
    assert A not in d.pools and second.pool.closes == 1 and d.inflight(A) == 0
    await shut(d, lb)


async def test_a_normal_release_is_not_an_unclosed_response(rng: random.Random) -> None:
    """release() counts nothing as leaked; only a finalizer's release is an unclosed response."""
    d, lb, _ = make([A], rng)
    async with asyncio.timeout(1):
        lease = await d.acquire()
    lease.release()
    lease.release(Outcome.SERVER_ERROR)  # a second call is ignored, leaked or not
    assert lb.unclosed_responses == 0
    async with asyncio.timeout(1):
        leaked = await d.acquire()
    leaked.release(leaked=True)
    assert lb.unclosed_responses == 1
    await shut(d, lb)


async def test_finalizer_release_on_a_running_loop_is_scheduled_not_immediate(rng: random.Random) -> None:
    """From a finalizer the release runs later on the loop (the bookkeeping may be mid-iteration)."""
    d, lb, _ = make([A], rng)
    async with asyncio.timeout(1):
        lease = await d.acquire()
    lease.release_from_finalizer(Outcome.OK)
    assert not lease.released and d.inflight(A) == 1 and lb.unclosed_responses == 0
    await asyncio.sleep(0)
    assert lease.released and d.inflight(A) == 0 and lb.unclosed_responses == 1
    assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    lease.release_from_finalizer(Outcome.OK)  # already released: nothing more
    await asyncio.sleep(0)
    assert lb.unclosed_responses == 1
    await shut(d, lb)


def test_finalizer_release_after_the_loop_stopped_releases_at_once(rng: random.Random) -> None:
    """With the loop stopped the finalizer releases directly: counts drop, leak counted, pool closed later."""
    loop = asyncio.new_event_loop()
    try:
        d, lb, source = make([A], rng)
        lease: Lease[Pool] = loop.run_until_complete(asyncio.wait_for(d.acquire(), 1))
        source.set([])  # the endpoint leaves while its lease is held
        assert A in d.pools
        lease.release_from_finalizer(Outcome.RESET)  # loop not running: released right here
        assert lease.released and d.inflight(A) == 0 and lb.unclosed_responses == 1
        assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
        assert A not in d.pools and lease.pool.closes == 0  # the close waits for the loop
        loop.run_until_complete(asyncio.wait_for(_settle(d._pools), 1))
        assert lease.pool.closes == 1
        loop.run_until_complete(asyncio.wait_for(shut(d, lb), 1))
    finally:
        loop.close()


def test_finalizer_release_after_the_loop_closed_releases_at_once(rng: random.Random) -> None:
    """A finalizer running after the loop closed still puts the endpoint back, without raising."""
    loop = asyncio.new_event_loop()
    d, lb, _ = make([A], rng)
    lease: Lease[Pool] = loop.run_until_complete(asyncio.wait_for(d.acquire(), 1))
    loop.close()
    lease.release_from_finalizer(Outcome.OK)
    assert lease.released and d.inflight(A) == 0 and lb.unclosed_responses == 1


async def test_a_second_release_does_not_free_another_leases_count(rng: random.Random) -> None:
    """Releasing one lease twice leaves the other lease on the same endpoint counted (pool and algorithm)."""
    d, lb, source = make([A], rng)
    async with asyncio.timeout(1):
        first = await d.acquire()
        second = await d.acquire()
    source.set([B])
    first.release()
    first.release()
    async with asyncio.timeout(1):
        await d.drained()
    assert d.inflight(A) == 1 and lb.algorithm.inflight(A) == 1  # type: ignore[attr-defined]
    assert second.pool.closes == 0 and A in d.pools
    second.release()
    await shut(d, lb)
    assert second.pool.closes == 1


async def test_release_reports_failed_only_when_asked(rng: random.Random) -> None:
    """put() sees failed=False from a plain release(), True from a failed outcome and from a finalizer's."""
    d, lb, _ = make([A], rng)
    puts: list[bool] = []
    put = lb.algorithm.put

    def recording_put(endpoint: Any, elapsed: float | None = None, failed: bool = False) -> None:
        puts.append(failed)
        put(endpoint, elapsed, failed)

    lb.algorithm.put = recording_put  # type: ignore[method-assign]  # a spy on the real algorithm
    async with asyncio.timeout(1):
        plain, failing, collected = await d.acquire(), await d.acquire(), await d.acquire()
    plain.release()
    failing.release(Outcome.SERVER_ERROR)
    collected.release_from_finalizer(Outcome.RESET)
    await asyncio.sleep(0)
    assert puts == [False, True, True]
    await shut(d, lb)


async def test_aclose_forgets_retired_endpoints(rng: random.Random) -> None:
    """aclose() closes a retired endpoint's pool once and forgets it: a late release closes nothing more."""
    d, lb, source = make([A], rng)
    async with asyncio.timeout(1):
        lease = await d.acquire()
    source.set([B])
    assert "retired=1" in repr(d)
    async with asyncio.timeout(1):
        await d.aclose()
    assert "retired=0" in repr(d) and lease.pool.closes == 1
    lease.release()
    async with asyncio.timeout(1):
        await d.drained()
        await lb.aclose()
    assert lease.pool.closes == 1
