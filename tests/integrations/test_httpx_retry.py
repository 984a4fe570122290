"""Retries on another pod through BalancedTransport: refused connections, killed pods, 5xx, budget."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
from helpers_pods import SERVICE_HOST, refusing_port, running_pods

from kube_balance import EndpointPolicy, LoadBalancer
from kube_balance._retry import RetryPolicy
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport

URL = f"http://{SERVICE_HOST}"


async def test_refused_connection_is_retried_on_another_pod_for_any_method(rng: random.Random) -> None:
    """With a dead endpoint in the set, every GET and POST still succeeds on a live pod; the dead
    one is tried 5 times, then ejected (outlier ejection is on by default)."""
    async with running_pods(2) as pods:
        dead = f"127.0.0.1:{refusing_port()}"
        source = StaticSource([dead, *(p.key for p in pods)])
        transport = BalancedTransport("web.shop:http", source=source, algorithm="round_robin", rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            for i in range(30):
                r = await (client.get(f"{URL}/") if i % 2 else client.post(f"{URL}/echo", content=b"x"))
                assert r.status_code == 200
        # Round robin picks the dead endpoint every third get() until its 5th refusal ejects it.
        assert transport.dispatcher.retries == 5
        assert list(transport.balancer.status().ejected) == [dead]
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_no_retry_with_one_attempt(rng: random.Random) -> None:
    """max_attempts=1 surfaces the connection error (so the retry test above can fail)."""
    source = StaticSource([f"127.0.0.1:{refusing_port()}"])
    transport = BalancedTransport("web.shop:http", source=source, retry=RetryPolicy(max_attempts=1), rng=rng)
    async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{URL}/")
    assert transport.dispatcher.retries == 0


async def test_only_dead_endpoints_raise_after_trying_each_once(rng: random.Random) -> None:
    """All endpoints dead: distinct endpoints up to max_attempts, then an httpx.ConnectError naming them."""
    dead = [f"127.0.0.1:{refusing_port()}" for _ in range(3)]
    transport = BalancedTransport(
        "web.shop:http", source=StaticSource(dead), algorithm="round_robin", rng=rng
    )
    async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"{URL}/")
    assert transport.dispatcher.retries == 2
    message = str(info.value)
    assert message.startswith("service web.shop:http: 3 attempts failed, on ")
    assert sorted(message.partition(" on ")[2].partition(";")[0].split(", ")) == sorted(dead)
    assert "last error: ConnectError" in message
    # The same httpx class, raised from the original, with the caller's request.
    assert type(info.value) is httpx.ConnectError and isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.request.url.host == SERVICE_HOST
    assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


@pytest.mark.timeout(180)  # 2,000 real requests: about 25 s alone, minutes on a loaded machine
async def test_pod_killed_during_load_fails_no_request(rng: random.Random) -> None:
    """2,000 GETs, 50 at a time; a pod is killed midway (still listed): no request fails."""
    async with running_pods(4) as pods:
        transport = BalancedTransport("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        done = 0
        killed = asyncio.Event()

        async def worker(client: httpx.AsyncClient, n: int) -> list[int]:
            nonlocal done
            codes = []
            for _ in range(n):
                codes.append((await client.get(f"{URL}/")).status_code)
                done += 1
                if done == 500 and not killed.is_set():
                    killed.set()
                    await pods[2].kill()
            return codes

        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(150):
            results = await asyncio.gather(*(worker(client, 40) for _ in range(50)))
        assert Counter(c for codes in results for c in codes) == {200: 2000}
        assert killed.is_set() and transport.dispatcher.retries > 0
        assert 0 < pods[2].hits < 2000 // 4  # it served until it died
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_gateway_errors_retried_for_idempotent_methods_only(rng: random.Random) -> None:
    """retry_statuses=True retries a 503 GET on another pod; a POST gets the 503."""
    async with running_pods(2) as pods:
        pods[0].status = 503
        balancer = LoadBalancer(  # no ejection: the 503 pod must keep its turn for this test
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            policy=EndpointPolicy.default(ejection=False),
            rng=rng,
        )
        transport = BalancedTransport(balancer, retry=RetryPolicy(retry_statuses=True))
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            gets = Counter([(await client.get(f"{URL}/")).status_code for _ in range(10)])
            posts = Counter([(await client.post(f"{URL}/")).status_code for _ in range(10)])
        assert gets == {200: 10}
        assert posts == {200: 5, 503: 5}
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_any_listed_status_is_retried_429_included(rng: random.Random) -> None:
    """retry_statuses=[429] retries a 429 GET on another pod (it was accepted and ignored before)."""
    async with running_pods(2) as pods:
        pods[0].status = 429
        transport = BalancedTransport(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            retry=RetryPolicy(retry_statuses=[429]),
            rng=rng,
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            gets = Counter([(await client.get(f"{URL}/")).json()["pod"] for _ in range(10)])
            posts = Counter([(await client.post(f"{URL}/")).status_code for _ in range(10)])
        assert gets == {"pod-1": 10}
        assert posts == {200: 5, 429: 5}  # not idempotent: never retried
        assert transport.dispatcher.retries == pods[0].hits - 5 > 0  # each GET that met pod-0 went on
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_gateway_errors_not_retried_by_default(rng: random.Random) -> None:
    """Without retry_statuses, a 503 is returned as is."""
    async with running_pods(2) as pods:
        pods[0].status = 503
        transport = BalancedTransport(
            "web.shop:http", source=StaticSource([p.key for p in pods]), algorithm="round_robin", rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            gets = Counter([(await client.get(f"{URL}/")).status_code for _ in range(10)])
        assert gets == {200: 5, 503: 5}


async def test_exhausted_budget_stops_retries(rng: random.Random) -> None:
    """A zero budget that also charges connection failures turns the refusal into an error."""
    async with running_pods(1) as pods:
        source = StaticSource([f"127.0.0.1:{refusing_port()}", pods[0].key])
        policy = RetryPolicy(budget_percent=0.0, budget_min_concurrency=0, budget_not_sent=True)
        transport = BalancedTransport(
            "web.shop:http", source=source, algorithm="round_robin", retry=policy, rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            codes = []
            for _ in range(4):
                try:
                    codes.append((await client.get(f"{URL}/")).status_code)
                except httpx.ConnectError:
                    codes.append(0)
        assert sorted(codes) == [0, 0, 200, 200]
        assert transport.dispatcher.budget.exhausted == 2
