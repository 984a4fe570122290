"""What BalancedMiddleware tells the connector about one request's attempts, used once each: a
hedge's own pick serves its first attempt only, and a retry's budget slot its own attempt only."""

from __future__ import annotations

import asyncio
import inspect
import random
from typing import Any

import aiohttp
import pytest
from helpers_pods import SERVICE_HOST, Pod, running_pods

from kube_balance import HedgePolicy, RetryPolicy
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector, BalancedMiddleware

URL = f"http://{SERVICE_HOST}"
MIDDLEWARES = "middlewares" in inspect.signature(aiohttp.ClientSession.__init__).parameters
pytestmark = pytest.mark.skipif(not MIDDLEWARES, reason="client middlewares need aiohttp >= 3.12")


def settled(connector: BalancedConnector) -> None:
    """Every pick put back: the algorithm's in-flight count at 0, no connection still leased."""
    assert connector.balancers[0].algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    assert not connector._routes.routes[0].open


async def pick_order(session: aiohttp.ClientSession, pods: list[Pod]) -> list[Pod]:
    """The pods in round robin's order from the next pick on, learned with POSTs (one pick each,
    never hedged nor retried)."""
    order = []
    for _ in pods:
        async with session.post(f"{URL}/echo", data=b"x") as r:
            name = (await r.json())["pod"]
        order.append(next(p for p in pods if p.name == name))
    return order


async def test_a_hedge_retried_on_its_own_goes_to_a_third_pod_not_back_to_its_first_pick(
    rng: random.Random,
) -> None:
    """The first attempt's pod is slow; the hedge's pick answers 503 (a retried status), so the
    hedge is retried on the third pod, which answers. The hedge's pick is its first attempt's
    only: the retry neither reuses that (released) lease nor goes back to that pod."""
    async with running_pods(3) as pods, asyncio.timeout(20):
        connector = BalancedConnector(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            retry=RetryPolicy(retry_statuses=True),
            hedge=HedgePolicy(delay=0.05, budget_percent=1.0, budget_max=1),
            rng=rng,
        )
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(BalancedMiddleware(connector),)
        ) as session:
            slow, failing, good = await pick_order(session, pods)
            slow.delay, failing.status = 5.0, 503
            before = [p.arrived for p in pods]
            async with session.get(f"{URL}/") as r:
                assert (r.status, (await r.json())["pod"]) == (200, good.name)
            settled(connector)
            status = connector.balancers[0].status()
    assert [p.arrived - b for p, b in zip(pods, before, strict=True)] == [1, 1, 1]
    assert (status.hedges, status.retries, status.inflight) == (1, 1, 0)
    # with the 3 POSTs; the slow first attempt, outrun by its hedge's retry, is put as SLOW
    assert status.outcomes == {"ok": 4, "server_error": 1, "slow": 1}


async def test_a_retry_slot_is_held_by_its_own_attempt_only(rng: random.Random) -> None:
    """A middleware of the application's inside BalancedMiddleware sends a request twice (its own
    retry of a 503): neither connection holds a retry-budget slot, so a slot held meanwhile by a
    retry elsewhere stays held (the budget is not released on its behalf)."""

    async def resend_a_503(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        resp: aiohttp.ClientResponse = await handler(req)
        if resp.status == 503:
            resp.release()
            resp = await handler(req)
        return resp

    async with running_pods(1) as pods, asyncio.timeout(10):
        pods[0].status = 503
        connector = BalancedConnector("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        async with aiohttp.ClientSession(
            connector=connector, middlewares=(BalancedMiddleware(connector), resend_a_503)
        ) as session:
            budget = connector._routes.routes[0].dispatcher.budget
            assert budget.try_acquire()  # a retry of another request, in flight meanwhile
            async with session.get(f"{URL}/") as r:
                assert r.status == 503
            assert budget.retries == 1
            budget.release()
            settled(connector)
    assert pods[0].arrived == 2
