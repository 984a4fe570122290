"""The transport-independent dispatch core: leases, retries on another endpoint, pool lifecycle."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kube_balance import Endpoint, NoEndpointsAvailable
from kube_balance._balancer import LoadBalancer
from kube_balance._dispatch import FALLBACK_KEY, Dispatcher, Lease, Verdict
from kube_balance._outcome import Outcome
from kube_balance._retry import Failure, RetryPolicy
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock


class Pool:
    """A stand-in connection pool that knows whether it was closed."""

    def __init__(self) -> None:
        self.closed = False


async def close(pool: Pool) -> None:
    pool.closed = True


class Adapter:
    """The dispatcher's view of a client, for int "responses" (the status is the int itself).

    Each test sets what one attempt does (``attempt_fn``), how errors classify and how a response
    is discarded; pools are :class:`Pool` objects closed by ``close_fn``.
    """

    def __init__(self, close_fn: Callable[[Pool], Awaitable[None]] = close) -> None:
        self.close_fn = close_fn
        self.attempt_fn: Callable[[Lease[Pool]], Awaitable[int]] | None = None
        self.classify_fn: Callable[[BaseException], Verdict] = lambda e: Verdict(
            Failure.NOT_SENT, Outcome.CONNECT_FAILED
        )
        self.discard_fn: Callable[[int], Awaitable[None]] = ignore

    def open_pool(self) -> Pool:
        return Pool()

    async def close_pool(self, pool: Pool) -> None:
        await self.close_fn(pool)

    async def attempt(self, lease: Lease[Pool], request: None) -> int:
        assert self.attempt_fn is not None
        return await self.attempt_fn(lease)

    def classify(self, exc: BaseException) -> Verdict:
        return self.classify_fn(exc)

    def status(self, result: int) -> int:
        return result

    def retry_after(self, result: int) -> float | None:
        return None

    async def discard(self, result: int) -> None:
        await self.discard_fn(result)

    def explain(self, exc: Exception, attempts: Any, request: None) -> None:
        return None  # keep the original error


D = Dispatcher[Pool, None, int]


def make(keys: list[str], rng: random.Random, **kwargs: Any) -> tuple[D, LoadBalancer, StaticSource]:
    source = StaticSource(keys)
    lb = LoadBalancer(
        "web.shop:80", source=source, algorithm=str(kwargs.pop("algorithm", "round_robin")), rng=rng
    )
    adapter = Adapter(kwargs.pop("close_pool", close))
    return Dispatcher(lb, adapter, **kwargs), lb, source


async def ignore(result: int) -> None:
    """A discard() for int results: nothing to close."""


async def send(
    d: D,
    attempt: Callable[[Lease[Pool]], Awaitable[int]],
    *,
    key: str | bytes | None = None,
    method: str = "GET",
    classify: Callable[[BaseException], Verdict] | None = None,
    discard: Callable[[int], Awaitable[None]] = ignore,
) -> tuple[int, Lease[Pool]]:
    """d.send() with ``attempt`` as the adapter's one attempt, under a 1 s timeout."""
    adapter = d.adapter
    assert isinstance(adapter, Adapter)
    adapter.attempt_fn, adapter.discard_fn = attempt, discard
    if classify is not None:
        adapter.classify_fn = classify
    async with asyncio.timeout(1):
        return await d.send(None, key=key, method=method, replayable=True)


async def shut(d: D, lb: LoadBalancer) -> None:
    """Close the dispatcher and the balancer, bounded."""
    async with asyncio.timeout(1):
        await d.aclose()
        await lb.aclose()


async def test_lease_releases_exactly_once(rng: random.Random) -> None:
    """A second release() is a no-op: the algorithm's in-flight count drops once."""
    d, lb, _ = make(["10.0.0.1:80"], rng)
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert lb.algorithm.inflight("10.0.0.1:80") == 1 and d.budget.active == 1
    lease.release()
    lease.release(Outcome.SERVER_ERROR)
    assert lb.algorithm.inflight("10.0.0.1:80") == 0 and d.budget.active == 0
    assert repr(lease) == "<Lease 10.0.0.1:80 released>"
    await shut(d, lb)


async def test_no_endpoint_leases_the_fallback(rng: random.Random) -> None:
    """With nothing eligible the lease points at the fallback target and its own pool."""
    d, lb, source = make([], rng)
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert (lease.endpoint, lease.key, lease.host, lease.port) == (
        None,
        FALLBACK_KEY,
        "web.shop.svc.cluster.local",
        80,
    )
    lease.release()
    source.set(["10.0.0.1:80"])
    assert FALLBACK_KEY in d.pools  # the fallback pool is not tied to the endpoint set
    await shut(d, lb)


async def test_send_retries_on_a_different_endpoint(rng: random.Random) -> None:
    """A NOT_SENT failure is retried on an endpoint not tried before, and counted."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], rng)
    tried: list[str] = []

    async def attempt(lease: Lease[Pool]) -> int:
        tried.append(lease.key)
        if len(tried) < 3:
            raise ConnectionRefusedError
        return 200

    result, lease = await send(d, attempt, method="POST")
    assert result == 200 and len(set(tried)) == 3 and d.retries == 2
    assert lb.algorithm.total_inflight() == 1  # type: ignore[attr-defined]
    lease.release()
    assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    await shut(d, lb)


async def test_hash_key_with_one_target_retries_elsewhere_after_bounded_picks(rng: random.Random) -> None:
    """A key that always maps to the failed endpoint: after bounded picks the retry takes the
    untried endpoint directly (as Envoy's ring hash walks on); when it fails too, the error
    surfaces and counts are back to 0."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng, algorithm="ring_hash")
    tried: list[str] = []

    async def attempt(lease: Lease[Pool]) -> int:
        tried.append(lease.key)
        raise ConnectionRefusedError

    with pytest.raises(ConnectionRefusedError):
        await send(d, attempt, key=b"user-1")
    assert sorted(tried) == ["10.0.0.1:80", "10.0.0.2:80"] and d.retries == 1
    assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    await shut(d, lb)


async def test_local_failure_is_not_put_as_the_endpoint_failing(rng: random.Random) -> None:
    """An error classify() blames on our side is put() as not failed, so peak_ewma adds no penalty."""
    d, lb, _ = make(["10.0.0.1:80"], rng, algorithm="peak_ewma")
    puts: list[bool] = []
    put = lb.algorithm.put

    def recording_put(endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        puts.append(failed)
        put(endpoint, elapsed, failed)

    lb.algorithm.put = recording_put  # type: ignore[method-assign]  # a spy on the real algorithm

    async def attempt(lease: Lease[Pool]) -> int:
        raise TimeoutError("our own pool is full")

    for at_fault in (False, True):
        verdict = Verdict(None, Outcome.ERROR if at_fault else Outcome.LOCAL)
        with pytest.raises(TimeoutError):
            await send(d, attempt, classify=lambda e: verdict)  # noqa: B023 - used inside the iteration
    assert puts == [False, True]
    await shut(d, lb)


async def test_removed_endpoint_pool_closes_after_its_last_lease(rng: random.Random) -> None:
    """Removal with a lease held keeps the pool; releasing the lease closes it in its own task."""
    d, lb, source = make(["10.0.0.1:80", "10.0.0.2:80"], rng)
    first = await asyncio.wait_for(d.acquire(), 1)
    pool = first.pool
    source.set([k for k in ("10.0.0.1:80", "10.0.0.2:80") if k != first.key])
    await asyncio.wait_for(d.drained(), 1)
    assert not pool.closed and first.key in d.pools
    first.release()
    await asyncio.wait_for(d.drained(), 1)
    assert pool.closed and first.key not in d.pools
    await shut(d, lb)


async def test_endpoint_back_before_draining_keeps_its_pool(rng: random.Random) -> None:
    """An endpoint that returns while its requests drain keeps the same pool."""
    d, lb, source = make(["10.0.0.1:80"], rng)
    lease = await asyncio.wait_for(d.acquire(), 1)
    source.set([])
    source.set(["10.0.0.1:80"])
    lease.release()
    await asyncio.wait_for(d.drained(), 1)
    assert d.pools["10.0.0.1:80"] is lease.pool and not lease.pool.closed
    await shut(d, lb)
    assert lease.pool.closed


async def test_cancelled_aclose_still_closes_every_pool(rng: random.Random) -> None:
    """Cancelling aclose() does not cancel the pool closes, even with a close_pool not shielded."""
    gate = asyncio.Event()

    async def slow_close(pool: Pool) -> None:  # no shield of its own
        await gate.wait()
        pool.closed = True

    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng, close_pool=slow_close)
    pools = []
    for _ in range(2):
        lease = await asyncio.wait_for(d.acquire(), 1)
        lease.release()
        pools.append(lease.pool)
    closing = asyncio.create_task(d.aclose())
    await asyncio.sleep(0)  # aclose() is now waiting for the two closes
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closing, 1)
    gate.set()
    await shut(d, lb)  # a second aclose() waits for the closes in progress
    assert [p.closed for p in pools] == [True, True]


async def test_pool_close_survives_its_task_being_cancelled(rng: random.Random) -> None:
    """Cancelling the task that closes a drained pool does not interrupt the close (shielded)."""
    gate = asyncio.Event()

    async def slow_close(pool: Pool) -> None:  # no shield of its own
        await gate.wait()
        pool.closed = True

    d, lb, source = make(["10.0.0.1:80"], rng, close_pool=slow_close)
    lease = await asyncio.wait_for(d.acquire(), 1)
    lease.release()
    source.set([])  # the idle pool starts closing in a task of its own
    await asyncio.sleep(0)
    closing = tuple(d._pools._closing)
    assert len(closing) == 1
    closing[0].cancel()
    await asyncio.sleep(0)
    gate.set()
    for _ in range(10):  # bounded: the shielded close needs a couple of loop turns
        await asyncio.sleep(0)
    assert lease.pool.closed
    await shut(d, lb)


async def test_status_retry_discards_the_first_response(rng: random.Random) -> None:
    """A 503 to a GET with retry_statuses on is discarded and retried elsewhere."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=RetryPolicy(retry_statuses=True))
    discarded: list[int] = []
    codes = iter([503, 200])

    async def attempt(lease: Lease[Pool]) -> int:
        return next(codes)

    async def discard(result: int) -> None:
        discarded.append(result)

    result, lease = await send(d, attempt, classify=lambda e: Verdict(None), discard=discard)
    lease.release()
    assert (result, discarded, d.retries) == (200, [503], 1)
    assert d.budget.retries == 0 and d.budget.active == 0
    await shut(d, lb)


async def test_status_retry_goes_on_when_discarding_fails(
    rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """An error closing the 5xx body is logged; the retry still answers, and every lease is put."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=RetryPolicy(retry_statuses=True))
    codes = iter([503, 200])

    async def attempt(lease: Lease[Pool]) -> int:
        return next(codes)

    async def broken_discard(result: int) -> None:
        raise OSError("connection reset while draining the body")

    result, lease = await send(d, attempt, discard=broken_discard)
    lease.release()
    assert (result, d.retries) == (200, 1)
    assert "discarding a 503 response" in caplog.text
    assert lb.algorithm.total_inflight() == 0 and d.budget.active == 0  # type: ignore[attr-defined]
    await shut(d, lb)


async def test_elapsed_follows_the_injected_clock(rng: random.Random, clock: FakeClock) -> None:
    """The elapsed time given to put() is measured with the dispatcher's clock."""
    d, lb, _ = make(["10.0.0.1:80"], rng, clock=clock)
    lease = await asyncio.wait_for(d.acquire(), 1)
    clock.advance(2.5)
    lease.headers_received()
    assert lease.elapsed == 2.5
    lease.release()
    await shut(d, lb)


async def test_fallback_none_surfaces_no_endpoints(rng: random.Random) -> None:
    """fallback='none' makes acquire() raise the core NoEndpointsAvailable."""
    lb = LoadBalancer("web.shop:80", source=StaticSource([]), fallback="none", rng=rng)
    d: D = Dispatcher(lb, Adapter())
    with pytest.raises(NoEndpointsAvailable):
        await asyncio.wait_for(d.acquire(), 1)
    assert d.budget.active == 0
    await shut(d, lb)


def test_lease_host_is_the_bare_address_for_ipv6(rng: random.Random) -> None:
    """IPv6 endpoints lease the unbracketed address (URL builders add the brackets)."""
    d, lb, _ = make([], rng)
    lb.on_endpoints(StaticSource([Endpoint("fd00::1", 80)]).snapshot)
    lease = d._pick_other(None, set())
    assert lease is not None and (lease.host, lease.key) == ("fd00::1", "[fd00::1]:80")


async def test_closed_dispatcher_refuses_new_requests(rng: random.Random) -> None:
    """After aclose() no new pool can be opened behind the caller's back."""
    d, lb, _ = make(["10.0.0.1:80"], rng)
    await asyncio.wait_for(d.aclose(), 1)
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(d.acquire(), 1)
    await shut(d, lb)


async def test_dispatcher_dropped_without_aclose_is_collected(rng: random.Random) -> None:
    """The balancer's listener holds the dispatcher weakly: dropped, it and its pools are freed."""
    d, lb, source = make(["10.0.0.1:80", "10.0.0.2:80"], rng)
    lease = await asyncio.wait_for(d.acquire(), 1)
    lease.release()
    dispatcher, pool = weakref.ref(d), weakref.ref(lease.pool)
    del d, lease
    gc.collect()
    assert dispatcher() is None and pool() is None
    source.set(["10.0.0.1:80"])  # the balancer's change notification still works
    assert len(lb.eligible) == 1
    await asyncio.wait_for(lb.aclose(), 1)
