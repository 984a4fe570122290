"""Health policy with real pods, through the httpx transport and the aiohttp connector: a pod
refusing connections and a pod answering 503 are ejected, and come back once healthy; with 3 of 4
pods refusing, requests still succeed (refused attempts sent nothing, so they try further pods)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx
import pytest
from helpers_pods import SERVICE_HOST, Pod, running_pods

from kube_balance import LoadBalancer
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeClock

URL = f"http://{SERVICE_HOST}/"
Get = Callable[[], Awaitable[int]]


@asynccontextmanager
async def client_for(kind: str, lb: LoadBalancer) -> AsyncIterator[Get]:
    """A ``get() -> status`` of ``/`` through the given client kind, reading the body."""
    if kind == "httpx":
        async with httpx.AsyncClient(transport=BalancedTransport(lb)) as client:

            async def get_httpx() -> int:
                return (await client.get(URL)).status_code

            yield get_httpx
    else:
        async with aiohttp.ClientSession(connector=BalancedConnector(lb)) as session:

            async def get_aiohttp() -> int:
                async with session.get(URL) as r:
                    await r.read()
                    return r.status

            yield get_aiohttp


async def load(get: Get, requests: int, tasks: int = 8) -> Counter[int]:
    """``requests`` GETs from ``tasks`` concurrent tasks: statuses by count."""
    per_task = requests // tasks

    async def worker() -> list[int]:
        return [await get() for _ in range(per_task)]

    results = await asyncio.gather(*(worker() for _ in range(tasks)))
    return Counter(code for codes in results for code in codes)


async def until_ejected(get: Get, lb: LoadBalancer, clock: FakeClock) -> Counter[int]:
    """Load in rounds of 40 GETs until an endpoint is ejected (at most 10 rounds); between rounds
    the clock moves 1 s, so a failing pod's phantom load (``suspect_time``) ends and it is tried
    again. Returns the statuses by count."""
    codes: Counter[int] = Counter()
    for _ in range(10):
        codes += await load(get, 40)
        if lb.status().ejected:
            break
        clock.advance(1.0)
    return codes


def hits(pods: list[Pod]) -> list[int]:
    """Requests each pod answered so far."""
    return [p.hits for p in pods]


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_refusing_pod_is_ejected_and_returns(kind: str, rng: random.Random, clock: FakeClock) -> None:
    """A pod refusing connections is tried 5 times, ejected (no request fails), and after its
    ejection time, listening again, it serves its share again."""
    async with running_pods(4) as pods, asyncio.timeout(30):
        await pods[1].kill()
        lb = LoadBalancer("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng, clock=clock)
        async with lb, client_for(kind, lb) as get:
            assert set(await until_ejected(get, lb, clock)) == {200}
            status = lb.status()
            assert list(status.ejected) == [pods[1].key]
            assert status.ejected[pods[1].key].reason == "5 consecutive failures (last: connect_failed)"
            assert status.outcomes["connect_failed"] == 5
            await pods[1].start()  # listening again, on the same port
            clock.advance(33)  # past the first ejection time (30 s, jitter up to 10%)
            before = hits(pods)
            assert await load(get, 200) == {200: 200}
            assert lb.status().ejected == {}
            gained = [after - b for after, b in zip(hits(pods), before, strict=False)]
            assert gained[1] > 20, gained  # a fair share would be 50
            assert lb.status().inflight == 0


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_503_pod_is_ejected_and_returns(kind: str, rng: random.Random, clock: FakeClock) -> None:
    """A pod answering 503 costs 5 requests a 503, then is ejected; once it answers 200 and its
    ejection time is over it serves again."""
    async with running_pods(4) as pods, asyncio.timeout(30):
        pods[2].status = 503
        lb = LoadBalancer("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng, clock=clock)
        async with lb, client_for(kind, lb) as get:
            codes = await until_ejected(get, lb, clock)
            # 5 to eject it, and at most a few more that were in flight on it meanwhile
            assert set(codes) == {200, 503} and 5 <= codes[503] <= 8, codes
            assert list(lb.status().ejected) == [pods[2].key]
            assert lb.status().ejected[pods[2].key].reason == "5 consecutive failures (last: server_error)"
            pods[2].status = 200
            clock.advance(33)
            before = pods[2].hits
            assert await load(get, 200) == {200: 200}
            assert pods[2].hits - before > 20
            assert lb.status().ejected == {}


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_three_of_four_refusing_fail_no_request(kind: str, rng: random.Random) -> None:
    """3 of 4 pods refusing (only one may be ejected, the 10% cap): every GET and POST still
    succeeds, each trying untried pods until the live one (NOT_SENT retries beyond max_attempts)."""
    async with running_pods(4) as pods, asyncio.timeout(30):
        for pod in pods[1:]:
            await pod.kill()
        lb = LoadBalancer("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with lb, client_for(kind, lb) as get:
            assert await load(get, 400, tasks=20) == {200: 400}
            assert len(lb.status().ejected) == 1
            assert lb.status().inflight == 0
