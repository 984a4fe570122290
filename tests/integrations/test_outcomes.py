"""One outcome seam: every request's outcome reaches LoadBalancer.put() once, through either client."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance import Endpoint, EndpointSet, LoadBalancer, Outcome, RetryPolicy
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.integrations.httpx import BalancedTransport

URL = f"http://{SERVICE_HOST}"
Seen = list[tuple[str, Outcome, "int | None", "float | None"]]


def observe(lb: LoadBalancer) -> Seen:
    """Record (endpoint key, outcome, status, retry_after) of every put()."""
    seen: Seen = []

    def observer(
        ep: Endpoint, elapsed: float | None, outcome: Outcome, status: int | None, ra: float | None
    ) -> None:
        assert elapsed is None or elapsed >= 0
        seen.append((ep.key, outcome, status, ra))

    lb.add_observer(observer)
    return seen


@asynccontextmanager
async def client_for(kind: str, lb: LoadBalancer, **options: Any) -> AsyncIterator[Callable[..., Any]]:
    """A ``get(path, timeout=None) -> status`` through the given client kind, reading the body."""
    if kind == "httpx":
        async with httpx.AsyncClient(transport=BalancedTransport(lb, **options)) as client:

            async def get_httpx(path: str, timeout: float | None = None) -> int:
                r = await client.get(f"{URL}{path}", timeout=timeout)
                return r.status_code

            yield get_httpx
    else:
        async with aiohttp.ClientSession(connector=BalancedConnector(lb, **options)) as session:

            async def get_aiohttp(path: str, timeout: float | None = None) -> int:
                t = aiohttp.ClientTimeout(total=timeout)
                async with session.get(f"{URL}{path}", timeout=t) as r:
                    await r.read()
                    return r.status

            yield get_aiohttp


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_each_outcome_is_observed_once(kind: str, rng: random.Random) -> None:
    """ok, 5xx, 429 with Retry-After, a reset, a timeout and a cancellation each reach put() once,
    with the status and Retry-After where there was a response; status() counts them."""
    async with running_pods(1) as pods, asyncio.timeout(20):
        lb = LoadBalancer("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        seen = observe(lb)
        async with lb, client_for(kind, lb, retry=RetryPolicy(max_attempts=1)) as get:
            assert await get("/") == 200
            assert await get("/status/503") == 503
            assert await get("/busy/7") == 429
            with pytest.raises((httpx.TransportError, aiohttp.ClientError)):
                await get("/reset")
            with pytest.raises((httpx.TimeoutException, asyncio.TimeoutError)):
                await get("/slow?delay=5", timeout=0.2)
            task = asyncio.create_task(get("/slow?delay=5"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            status = lb.status()
        key = pods[0].key
        # aiohttp's session itself sends an idempotent request again, once, when a reused
        # keep-alive connection drops: two attempts, each observed.
        resets = 2 if kind == "aiohttp" else 1
        assert seen == [
            (key, Outcome.OK, 200, None),
            (key, Outcome.SERVER_ERROR, 503, None),
            (key, Outcome.OVERLOADED, 429, 7.0),
            *[(key, Outcome.RESET, None, None)] * resets,
            (key, Outcome.TIMEOUT, None, None),
            (key, Outcome.CANCELLED, None, None),
        ]
        assert status.requests == 5 + resets and status.inflight == 0
        assert status.outcomes == {o.label: (resets if o is Outcome.RESET else 1) for _, o, _, _ in seen}


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
async def test_refused_then_retried_is_two_outcomes_and_a_retry(kind: str, rng: random.Random) -> None:
    """A refused connection is observed as connect_failed on the dead pod, the retry as ok on the
    live one; retries and outcomes are read from one status()."""
    async with running_pods(2) as pods, asyncio.timeout(20):
        dead = pods[1]
        await dead.kill()
        lb = LoadBalancer(
            "web.shop:http", source=StaticSource([dead.key, pods[0].key]), algorithm="round_robin", rng=rng
        )
        seen = observe(lb)
        async with lb, client_for(kind, lb) as get:
            for _ in range(4):
                assert await get("/") == 200
            status = lb.status()
        refused = [s for s in seen if s[1] is Outcome.CONNECT_FAILED]
        assert refused and {s[0] for s in refused} == {dead.key}
        assert [s[1] for s in seen].count(Outcome.OK) == 4
        assert status.retries == len(refused)
        assert status.outcomes == {"ok": 4, "connect_failed": len(refused)}


async def test_full_local_pool_is_local_not_the_pods_failure(rng: random.Random) -> None:
    """httpx's PoolTimeout (our own pool full) is put as Outcome.LOCAL: not failed."""
    async with running_pods(1) as pods, asyncio.timeout(20):
        lb = LoadBalancer("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        seen = observe(lb)
        limits = httpx.Limits(max_connections=1)
        async with (
            lb,
            httpx.AsyncClient(transport=BalancedTransport(lb, limits=limits)) as client,
            client.stream("GET", f"{URL}/stream"),
        ):
            with pytest.raises(httpx.PoolTimeout):
                await client.get(f"{URL}/", timeout=httpx.Timeout(5, pool=0.1))
            pods[0].gate.set()
        assert (pods[0].key, Outcome.LOCAL, None, None) in seen
        assert not Outcome.LOCAL.failed


def test_outcome_properties() -> None:
    """failed and local_origin follow Envoy's split; of_status maps 5xx, 429 and the rest."""
    assert {o for o in Outcome if not o.failed} == {
        Outcome.OK,
        Outcome.CANCELLED,
        Outcome.LOCAL,
        Outcome.SLOW,
    }
    assert {o for o in Outcome if o.local_origin} == {Outcome.CONNECT_FAILED, Outcome.RESET, Outcome.TIMEOUT}
    assert [Outcome.of_status(s) for s in (200, 404, 429, 499, 500, 599)] == [
        Outcome.OK,
        Outcome.OK,
        Outcome.OVERLOADED,
        Outcome.OK,
        Outcome.SERVER_ERROR,
        Outcome.SERVER_ERROR,
    ]


def test_observer_removal_and_put_defaults(rng: random.Random) -> None:
    """put(failed=True) without an outcome is a server error; a removed observer hears nothing."""
    lb = LoadBalancer("web.shop:80", source=StaticSource([]), rng=rng)
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    seen = observe(lb)
    ep = lb.algorithm.get()
    assert ep is not None
    lb.put(ep, 0.1, True)
    remove = lb.add_observer(lambda *a: seen.append(("second", Outcome.OK, None, None)))
    remove()
    ep = lb.algorithm.get()
    assert ep is not None
    lb.put(ep)
    assert [o for _, o, _, _ in seen] == [Outcome.SERVER_ERROR, Outcome.OK]
    assert lb.status().outcomes == {"server_error": 1, "ok": 1}


def test_every_outcome_is_distinct_and_truthy() -> None:
    """Ten distinct members, none falsy (an IntEnum from 1), ERROR a failure of its own."""
    assert len(Outcome) == 10 and len({int(o) for o in Outcome}) == 10
    assert all(o for o in Outcome) and min(int(o) for o in Outcome) == 1
    assert Outcome.ERROR.failed and Outcome.ERROR is not Outcome.LOCAL


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("300", 300.0),
        ("301", 300.0),
        ("86400", 300.0),
        ("-1", None),
        ("nan", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_retry_after_is_delta_seconds_capped_at_300(header: str | None, seconds: float | None) -> None:
    """Retry-After: delta-seconds, 0 allowed, capped at 300 s; negative, NaN and HTTP dates ignored."""
    from kube_balance._outcome import parse_retry_after

    assert parse_retry_after(header) == seconds
