"""The connector's release path in detail: what each way of ending reports, once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kube_balance import LoadBalancer, Outcome
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations import aiohttp as kb_aiohttp
from kube_balance.integrations.aiohttp import BalancedConnector

SERVICE = "http://web.shop.svc.cluster.local"


@pytest.fixture
async def pod() -> AsyncIterator[int]:
    """One real aiohttp server on 127.0.0.1: "/" answers ok, "/busy" 503 with Retry-After: 3."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/busy", busy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    yield server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await asyncio.wait_for(runner.cleanup(), 5)


def test_response_errors_map_to_outcomes() -> None:
    assert kb_aiohttp._response_outcome(asyncio.CancelledError()) is Outcome.CANCELLED
    assert kb_aiohttp._response_outcome(TimeoutError()) is Outcome.TIMEOUT
    assert kb_aiohttp._response_outcome(aiohttp.ServerDisconnectedError()) is Outcome.RESET
    assert kb_aiohttp._response_outcome(ConnectionResetError()) is Outcome.RESET
    assert kb_aiohttp._response_outcome(ValueError("bad header")) is Outcome.ERROR


async def test_a_release_before_the_headers_is_a_reset_timed_to_the_failure(rng: random.Random) -> None:
    """A connection given back before any response (it broke while sending): RESET, once, with
    the time until then as elapsed, and off the connector's open set."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), rng=rng, fallback=None)
    seen: list[tuple[Outcome, float | None]] = []
    lb.add_observer(lambda ep, elapsed, outcome, status, ra: seen.append((outcome, elapsed)))
    connector = BalancedConnector(lb)
    route = connector._routes.routes[0]
    await asyncio.wait_for(lb.wait_ready(1), 1)
    lease = await asyncio.wait_for(route.dispatcher.acquire(), 1)
    assert isinstance(lease, kb_aiohttp._ConnLease)
    lease.hold(route.open)
    assert route.open == {lease} and not lease.starting
    lease.give_back()
    lease.give_back()  # aiohttp's close() after release(): still once
    assert route.open == set() and lease.released
    ((what, elapsed),) = seen
    assert what is Outcome.RESET and elapsed is not None and elapsed >= 0
    await asyncio.wait_for(connector.close(), 5)
    await lb.aclose()


async def test_retry_after_and_status_of_a_503_reach_the_balancer(rng: random.Random, pod: int) -> None:
    lb = LoadBalancer("web.shop:80", source=StaticSource([f"127.0.0.1:{pod}"]), rng=rng)
    seen: list[tuple[Outcome, int | None, float | None]] = []
    lb.add_observer(lambda ep, elapsed, outcome, status, ra: seen.append((outcome, status, ra)))
    connector = BalancedConnector(lb)
    async with aiohttp.ClientSession(connector=connector) as session:
        classes = []
        for path in ("/busy", "/"):
            async with asyncio.timeout(5), session.get(f"{SERVICE}{path}") as resp:
                await resp.read()
                classes.append(type(resp))
    assert seen == [(Outcome.SERVER_ERROR, 503, 3.0), (Outcome.OK, 200, None)]
    assert classes[0] is classes[1]  # one reporting class per response class, made once
    assert connector.closed  # aiohttp's own close ran
    await lb.aclose()


def test_the_reporting_class_is_made_once_and_never_wraps_itself() -> None:
    sub = kb_aiohttp._reporting_class(aiohttp.ClientResponse)
    assert sub is not aiohttp.ClientResponse and issubclass(sub, aiohttp.ClientResponse)
    assert kb_aiohttp._reporting_class(sub) is sub
    assert kb_aiohttp._response_classes[aiohttp.ClientResponse] is sub


async def test_a_reporting_response_on_a_plain_connection_is_its_base(pod: int) -> None:
    """The reporting class used without the connector (no lease on the connection) reads as usual."""
    sub = kb_aiohttp._reporting_class(aiohttp.ClientResponse)
    async with (
        aiohttp.ClientSession(response_class=sub) as session,
        asyncio.timeout(5),
        session.get(f"http://127.0.0.1:{pod}/") as resp,
    ):
        assert isinstance(resp, sub)
        assert resp.status == 200 and await resp.text() == "ok"


async def test_elapsed_is_the_time_to_the_headers_not_to_the_release(rng: random.Random) -> None:
    """put() gets the time from the pick to the response headers: the 1.5 s the body takes
    after them is not counted (the connection goes back only when the body ends)."""

    async def streaming(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)  # the headers go now, the body later
        await asyncio.sleep(1.5)
        await response.write(b"ok")
        return response

    app = web.Application()
    app.router.add_get("/", streaming)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    lb = LoadBalancer("web.shop:80", source=StaticSource([f"127.0.0.1:{port}"]), rng=rng, fallback=None)
    seen: list[tuple[Outcome, float | None]] = []
    lb.add_observer(lambda ep, elapsed, outcome, status, ra: seen.append((outcome, elapsed)))
    session = aiohttp.ClientSession(connector=BalancedConnector(lb))
    try:
        async with session, asyncio.timeout(10), session.get(f"{SERVICE}/") as resp:
            assert await resp.read() == b"ok"
    finally:
        await asyncio.wait_for(runner.cleanup(), 5)
    [(outcome, elapsed)] = seen
    assert outcome is Outcome.OK and elapsed is not None and 0 < elapsed < 1.0
    await lb.aclose()


async def test_no_pool_and_no_per_pod_count_of_ours(rng: random.Random, pod: int) -> None:
    """aiohttp pools connections itself (``Adapter.pooled`` False): after a request, no pool of
    the connector's dispatcher is left open for the pod; and a lease held on the pod is counted
    in flight by the balancer alone, not per pod by the dispatcher (one update less a request)."""
    key = f"127.0.0.1:{pod}"
    lb = LoadBalancer("web.shop:80", source=StaticSource([key]), rng=rng)
    connector = BalancedConnector(lb)
    route = connector._routes.routes[0]
    dispatcher = route.dispatcher
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.timeout(5), session.get(SERVICE) as resp:
            assert await resp.text() == "ok"
        assert dispatcher.pools == {} and dispatcher.inflight(key) == 0
        lease = await asyncio.wait_for(dispatcher.acquire(), 1)
        assert lease.pool is None and dispatcher.pools == {} and dispatcher.inflight(key) == 0
        assert lb.algorithm.total_inflight() == 1  # type: ignore[attr-defined]
        lease.release()
        assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    await lb.aclose()
