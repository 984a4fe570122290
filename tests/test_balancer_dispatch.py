"""The transport-independent dispatch core: leases, retries on another endpoint, pool lifecycle."""

from __future__ import annotations

import asyncio
import random

import pytest

from kube_balance import Endpoint, NoEndpointsAvailable
from kube_balance._balancer import LoadBalancer
from kube_balance._dispatch import FALLBACK_KEY, Dispatcher, Lease
from kube_balance._retry import Failure, RetryPolicy
from kube_balance.discovery.static import StaticSource


class Pool:
    """A stand-in connection pool that knows whether it was closed."""

    def __init__(self) -> None:
        self.closed = False


async def close(pool: Pool) -> None:
    pool.closed = True


def make(
    keys: list[str], rng: random.Random, **kwargs: object
) -> tuple[Dispatcher[Pool], LoadBalancer, StaticSource]:
    source = StaticSource(keys)
    lb = LoadBalancer(
        "web.shop:80", source=source, algorithm=str(kwargs.pop("algorithm", "round_robin")), rng=rng
    )
    return Dispatcher(lb, open_pool=Pool, close_pool=close, **kwargs), lb, source  # type: ignore[arg-type]


async def test_lease_releases_exactly_once(rng: random.Random) -> None:
    """A second release() is a no-op: the algorithm's in-flight count drops once."""
    d, lb, _ = make(["10.0.0.1:80"], rng)
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert lb.algorithm.inflight("10.0.0.1:80") == 1 and d.budget.active == 1
    lease.release()
    lease.release(failed=True)
    assert lb.algorithm.inflight("10.0.0.1:80") == 0 and d.budget.active == 0
    assert repr(lease) == "<Lease 10.0.0.1:80 released>"
    await lb.aclose()


async def test_no_endpoint_leases_the_fallback(rng: random.Random) -> None:
    """With nothing eligible the lease points at the fallback target and its own pool."""
    source = StaticSource([])
    lb = LoadBalancer("web.shop:8080", source=source, rng=rng)
    d: Dispatcher[Pool] = Dispatcher(lb, open_pool=Pool, close_pool=close)
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert (lease.endpoint, lease.key, lease.host, lease.port) == (
        None,
        FALLBACK_KEY,
        "web.shop.svc.cluster.local",
        8080,
    )
    lease.release()
    source.set(["10.0.0.1:80"])
    assert FALLBACK_KEY in d.pools  # the fallback pool is not tied to the endpoint set
    await d.aclose()
    await lb.aclose()


async def test_send_retries_on_a_different_endpoint(rng: random.Random) -> None:
    """A NOT_SENT failure is retried on an endpoint not tried before, and counted."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], rng)
    tried: list[str] = []

    async def attempt(lease: Lease[Pool]) -> int:
        tried.append(lease.key)
        if len(tried) < 3:
            raise ConnectionRefusedError
        return 200

    async def discard(result: int) -> None:
        pass

    result, lease = await asyncio.wait_for(
        d.send(
            attempt,
            key=None,
            method="POST",
            replayable=False,
            classify=lambda e: Failure.NOT_SENT,
            status=lambda r: r,
            discard=discard,
        ),
        1,
    )
    assert result == 200 and len(set(tried)) == 3 and d.retries == 2
    assert lb.algorithm.total_inflight() == 1  # type: ignore[attr-defined]
    lease.release()
    assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    await lb.aclose()


async def test_hash_key_with_one_target_gives_up_after_bounded_picks(rng: random.Random) -> None:
    """A key that always maps to the failed endpoint: no retry, the error surfaces, counts are 0."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng, algorithm="ring_hash")

    async def attempt(lease: Lease[Pool]) -> int:
        raise ConnectionRefusedError

    async def discard(result: int) -> None:
        pass

    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(
            d.send(
                attempt,
                key=b"user-1",
                method="GET",
                replayable=True,
                classify=lambda e: Failure.NOT_SENT,
                status=lambda r: r,
                discard=discard,
            ),
            1,
        )
    assert d.retries == 0
    assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    await lb.aclose()


async def test_removed_endpoint_pool_closes_after_its_last_lease(rng: random.Random) -> None:
    """Removal with a lease held keeps the pool; releasing the lease closes it in its own task."""
    d, lb, source = make(["10.0.0.1:80", "10.0.0.2:80"], rng)
    first = await asyncio.wait_for(d.acquire(), 1)
    pool = first.pool
    source.set([k for k in ("10.0.0.1:80", "10.0.0.2:80") if k != first.key])
    await d.drained()
    assert not pool.closed and first.key in d.pools
    first.release()
    await asyncio.wait_for(d.drained(), 1)
    assert pool.closed and first.key not in d.pools
    await lb.aclose()


async def test_endpoint_back_before_draining_keeps_its_pool(rng: random.Random) -> None:
    """An endpoint that returns while its requests drain keeps the same pool."""
    d, lb, source = make(["10.0.0.1:80"], rng)
    lease = await asyncio.wait_for(d.acquire(), 1)
    source.set([])
    source.set(["10.0.0.1:80"])
    lease.release()
    await d.drained()
    assert d.pools["10.0.0.1:80"] is lease.pool and not lease.pool.closed
    await d.aclose()
    assert lease.pool.closed
    await lb.aclose()


async def test_status_retry_discards_the_first_response(rng: random.Random) -> None:
    """A 503 to a GET with retry_statuses on is discarded and retried elsewhere."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=RetryPolicy(retry_statuses=True))
    discarded: list[int] = []
    codes = iter([503, 200])

    async def attempt(lease: Lease[Pool]) -> int:
        return next(codes)

    async def discard(result: int) -> None:
        discarded.append(result)

    result, lease = await asyncio.wait_for(
        d.send(
            attempt,
            key=None,
            method="GET",
            replayable=True,
            classify=lambda e: None,
            status=lambda r: r,
            discard=discard,
        ),
        1,
    )
    lease.release()
    assert (result, discarded, d.retries) == (200, [503], 1)
    assert d.budget.retries == 0 and d.budget.active == 0
    await lb.aclose()


async def test_fallback_none_surfaces_no_endpoints(rng: random.Random) -> None:
    """fallback='none' makes acquire() raise the core NoEndpointsAvailable."""
    lb = LoadBalancer("web.shop:80", source=StaticSource([]), fallback="none", rng=rng)
    d: Dispatcher[Pool] = Dispatcher(lb, open_pool=Pool, close_pool=close)
    with pytest.raises(NoEndpointsAvailable):
        await asyncio.wait_for(d.acquire(), 1)
    assert d.budget.active == 0
    await lb.aclose()


def test_lease_host_is_the_bare_address_for_ipv6(rng: random.Random) -> None:
    """IPv6 endpoints lease the unbracketed address (URL builders add the brackets)."""
    d, lb, _ = make([], rng)
    lb.on_endpoints(StaticSource([Endpoint("fd00::1", 80)]).snapshot)
    lease = d._pick_other(None, set())
    assert lease is not None and (lease.host, lease.key) == ("fd00::1", "[fd00::1]:80")


async def test_closed_dispatcher_refuses_new_requests(rng: random.Random) -> None:
    """After aclose() no new pool can be opened behind the caller's back."""
    d, lb, _ = make(["10.0.0.1:80"], rng)
    await d.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(d.acquire(), 1)
    await lb.aclose()
