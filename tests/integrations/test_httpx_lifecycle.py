"""put() exactly once per get() through BalancedTransport, and the per-endpoint pool lifecycle."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import threading
import weakref
from collections.abc import Iterable
from typing import ClassVar

import httpx
import pytest
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance import Endpoint, create
from kube_balance.algorithms import Algorithm
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport

URL = f"http://{SERVICE_HOST}"


class Recording:
    """Wraps a real algorithm and records every get() and put() (a spy, not a mock)."""

    name: ClassVar[str] = "recording"
    requires_key: ClassVar[bool] = False

    def __init__(self, inner: Algorithm) -> None:
        self.inner = inner
        self.gets = 0
        self.puts: list[tuple[str, float | None, bool]] = []

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        ep = self.inner.get(key)
        self.gets += ep is not None
        return ep

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        self.puts.append((endpoint.key, elapsed, failed))
        self.inner.put(endpoint, elapsed, failed)

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        self.inner.update(endpoints)

    def inflight(self, endpoint: Endpoint | str) -> int:
        return self.inner.inflight(endpoint)

    def total_inflight(self) -> int:
        return self.inner.total_inflight()  # type: ignore[attr-defined,no-any-return]

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.inner.endpoints


def balanced(keys: list[str], rng: random.Random, **options: object) -> tuple[BalancedTransport, Recording]:
    algorithm = Recording(create(str(options.pop("algorithm", "round_robin")), rng=rng))
    transport = BalancedTransport("web.shop:http", source=StaticSource(keys), algorithm=algorithm, **options)  # type: ignore[arg-type]
    return transport, algorithm


def assert_all_put(transport: BalancedTransport, algorithm: Recording) -> None:
    assert algorithm.gets == len(algorithm.puts)
    assert algorithm.total_inflight() == 0
    for ep in algorithm.endpoints:
        assert algorithm.inflight(ep) == 0
    assert transport.dispatcher.budget.active == 0
    assert sum(transport.dispatcher.inflight(k) for k in transport.dispatcher.pools) == 0


async def test_a_thousand_cancelled_requests_leave_no_inflight(rng: random.Random) -> None:
    """1,000 requests cancelled after a seeded random number of loop turns: every count is 0."""
    async with running_pods(4) as pods:
        transport, algorithm = balanced([p.key for p in pods], rng, algorithm="least_request")
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(40):
            paths = ["/", "/slow?delay=0.01", "/big"]

            async def one(i: int) -> None:
                task = asyncio.create_task(client.get(f"{URL}{paths[i % 3]}"))
                for _ in range(rng.randrange(60)):  # cancel at a random point of the exchange
                    await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            for batch in range(20):  # bounded: 20 batches of 50 concurrent requests
                results = await asyncio.gather(
                    *(one(batch * 50 + i) for i in range(50)), return_exceptions=True
                )
                # Some finish before the cancel lands; those raise pytest's DID NOT RAISE, which is fine.
                assert all(r is None or isinstance(r, pytest.fail.Exception) for r in results)
            assert algorithm.gets >= 900  # most requests got as far as picking an endpoint
            assert_all_put(transport, algorithm)


async def test_unread_and_partly_read_streams_put_once(rng: random.Random) -> None:
    """client.stream() put()s once when the block exits, whether the body was read or not."""
    async with running_pods(2) as pods:
        transport, algorithm = balanced([p.key for p in pods], rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            async with client.stream("GET", f"{URL}/big") as r:
                assert r.status_code == 200
                assert algorithm.total_inflight() == 1  # headers are in: still in flight
            async with client.stream("GET", f"{URL}/big") as r:
                async for _ in r.aiter_raw(1000):
                    break
            async with client.stream("GET", f"{URL}/big") as r:
                assert len(await r.aread()) == 1_000_000
            assert len(algorithm.puts) == 3
            assert all(elapsed is not None and not failed for _, elapsed, failed in algorithm.puts)
            assert_all_put(transport, algorithm)


async def test_timeout_puts_once_as_failed(rng: random.Random) -> None:
    """A read timeout put()s the endpoint once with failed=True."""
    async with running_pods(1) as pods:
        transport, algorithm = balanced([p.key for p in pods], rng)
        async with httpx.AsyncClient(transport=transport, timeout=0.2) as client, asyncio.timeout(10):
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{URL}/slow?delay=2")
        assert [failed for _, _, failed in algorithm.puts] == [True]
        assert_all_put(transport, algorithm)


async def test_error_status_is_put_as_failed(rng: random.Random) -> None:
    """A 5xx response is reported to put() as failed, a 4xx is not."""
    async with running_pods(1) as pods:
        transport, algorithm = balanced([p.key for p in pods], rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            assert (await client.get(f"{URL}/status/500")).status_code == 500
            assert (await client.get(f"{URL}/status/404")).status_code == 404
        assert [failed for _, _, failed in algorithm.puts] == [True, False]


async def test_a_response_never_closed_is_put_by_the_safety_net(rng: random.Random) -> None:
    """A streamed response dropped without close() is put() when collected, and counted."""
    async with running_pods(1) as pods:
        transport, algorithm = balanced([p.key for p in pods], rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            response = await client.send(client.build_request("GET", f"{URL}/big"), stream=True)
            assert algorithm.total_inflight() == 1
            del response
            gc.collect()
            # The finalizer only schedules the release: no bookkeeping inside __del__.
            assert algorithm.total_inflight() == 1 and algorithm.puts == []
            await asyncio.sleep(0)
            assert algorithm.total_inflight() == 0
            assert transport.balancer.status().unclosed_responses == 1
            assert len(algorithm.puts) == 1


async def test_a_response_collected_in_another_thread_is_put_on_the_loop(rng: random.Random) -> None:
    """An unclosed response whose last reference dies in a worker thread is put() on the loop thread."""
    async with running_pods(1) as pods:
        transport, algorithm = balanced([p.key for p in pods], rng)
        threads: list[int] = []
        put = algorithm.put

        def recording_put(endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
            threads.append(threading.get_ident())
            put(endpoint, elapsed, failed)

        algorithm.put = recording_put  # type: ignore[method-assign]
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            held = [await client.send(client.build_request("GET", f"{URL}/big"), stream=True)]

            def drop() -> None:
                held.clear()
                gc.collect()

            await asyncio.to_thread(drop)
            while not threads:  # noqa: ASYNC110 - released by a loop callback, bounded by the timeout
                await asyncio.sleep(0)
        assert threads == [threading.get_ident()]
        assert transport.balancer.status().unclosed_responses == 1


async def test_removed_endpoint_stream_completes_then_pool_closes(rng: random.Random) -> None:
    """An endpoint removed mid-stream: the stream completes, then (only then) its pool closes."""
    async with running_pods(2) as pods:
        transport, algorithm = balanced([pods[0].key], rng)
        source = transport.balancer.source
        assert isinstance(source, StaticSource)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            async with client.stream("GET", f"{URL}/stream") as r:
                await pods[0].stream_started.wait()
                pool = transport.dispatcher.pools[pods[0].key]
                source.set([pods[1].key])  # pod-0 leaves while its response streams
                await transport.dispatcher.drained()
                assert pods[0].key in transport.dispatcher.pools  # not closed under the stream
                assert len(pool._pool.connections) == 1
                pods[0].gate.set()
                assert await r.aread() == b"first;last"
            await transport.dispatcher.drained()
            assert pods[0].key not in transport.dispatcher.pools
            assert pool._pool.connections == []
            assert (await client.get(f"{URL}/")).json()["pod"] == "pod-1"
        assert_all_put(transport, algorithm)


async def test_idle_pool_of_removed_endpoint_closes_at_once(rng: random.Random) -> None:
    """A removed endpoint with nothing in flight has its pool closed immediately."""
    async with running_pods(2) as pods:
        transport, _ = balanced([p.key for p in pods], rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            for _ in range(4):
                await client.get(f"{URL}/")
            assert set(transport.dispatcher.pools) == {pods[0].key, pods[1].key}
            transport.balancer.source.set([pods[1].key])  # type: ignore[attr-defined]
            await transport.dispatcher.drained()
            assert set(transport.dispatcher.pools) == {pods[1].key}


async def test_cancelled_request_on_a_removed_endpoint_still_closes_its_pool(rng: random.Random) -> None:
    """Cancelling the last request of a removed endpoint does not cancel the pool's close."""
    async with running_pods(1) as pods:
        transport, algorithm = balanced([pods[0].key], rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            task = asyncio.create_task(client.get(f"{URL}/stream"))
            await pods[0].stream_started.wait()
            pool = transport.dispatcher.pools[pods[0].key]
            transport.balancer.source.set([])  # type: ignore[attr-defined]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await transport.dispatcher.drained()
            assert pool._pool.connections == []
            assert transport.dispatcher.pools == {}
        assert_all_put(transport, algorithm)


async def test_full_local_pool_is_not_put_as_the_pod_failing(rng: random.Random) -> None:
    """A PoolTimeout (our own pool full) is put() with failed=False: no penalty for the pod."""
    async with running_pods(1) as pods:
        limits = httpx.Limits(max_connections=1)
        transport, algorithm = balanced([pods[0].key], rng, limits=limits)
        timeout = httpx.Timeout(5, pool=0.05)
        async with (
            httpx.AsyncClient(transport=transport, timeout=timeout) as client,
            asyncio.timeout(10),
            client.stream("GET", f"{URL}/stream"),  # holds the only connection
        ):
            with pytest.raises(httpx.PoolTimeout):
                await client.get(f"{URL}/")
            assert [failed for _, _, failed in algorithm.puts] == [False]
            pods[0].gate.set()
        assert_all_put(transport, algorithm)


async def test_elapsed_is_measured_with_the_injected_clock(rng: random.Random) -> None:
    """BalancedTransport(clock=...) times the attempt to its headers with that clock."""
    ticks = itertools.count(0.0, 7.0)  # each reading 7 s after the previous one
    async with running_pods(1) as pods:
        transport, algorithm = balanced([pods[0].key], rng, clock=lambda: next(ticks))
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            assert (await client.get(f"{URL}/")).status_code == 200
        [(_, elapsed, _)] = algorithm.puts
        assert elapsed is not None and elapsed > 0 and elapsed % 7.0 == 0  # perf_counter: ~1 ms


async def test_transport_dropped_without_aclose_does_not_outlive_it(rng: random.Random) -> None:
    """Over a shared balancer, a transport dropped unclosed (and its dispatcher) is collected."""
    async with running_pods(1) as pods:
        shared = BalancedTransport("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        async with httpx.AsyncClient(transport=shared) as client, asyncio.timeout(10):
            dropped = BalancedTransport(shared.balancer)
            refs = weakref.ref(dropped), weakref.ref(dropped.dispatcher)
            del dropped
            gc.collect()
            assert [ref() for ref in refs] == [None, None]
            assert (await client.get(f"{URL}/")).status_code == 200
