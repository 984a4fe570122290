"""BalancedMiddleware: the retries after a request was sent that the connector alone cannot do."""

from __future__ import annotations

import asyncio
import inspect
import random

import aiohttp
import pytest
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance import ConfigurationError, EndpointPolicy, LoadBalancer, RetryPolicy
from kube_balance._policy import ready_else_serving_terminating
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector, BalancedMiddleware

URL = f"http://{SERVICE_HOST}"

MIDDLEWARES = "middlewares" in inspect.signature(aiohttp.ClientSession.__init__).parameters
needs_middlewares = pytest.mark.skipif(not MIDDLEWARES, reason="client middlewares need aiohttp >= 3.12")


def session_for(connector: BalancedConnector) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=connector, middlewares=(BalancedMiddleware(connector),))


@needs_middlewares
async def test_a_503_is_retried_on_the_other_pod(rng: random.Random) -> None:
    """With retry_statuses, a GET answered 503 by one pod is sent again to the other: 20 x 200."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        pods[0].status = 503
        connector = BalancedConnector(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            retry=RetryPolicy(retry_statuses=True),
            rng=rng,
        )
        async with session_for(connector) as session:
            for _ in range(20):
                async with session.get(f"{URL}/") as r:
                    assert r.status == 200
                    assert (await r.json())["pod"] == "pod-1"
            status = connector.balancers[0].status()
        # Round robin makes pod-0 every request's first pick until outlier ejection (5 consecutive
        # failures, the default) takes it out: 5 answers of 503, each retried on pod-1.
        assert pods[0].hits == 5 and pods[1].hits == 20
        assert status.retries == 5 and status.inflight == 0
        assert status.outcomes == {"ok": 20, "server_error": 5}
        assert set(status.ejected) == {pods[0].key}
        assert connector._routes.routes[0].dispatcher.budget.retries == 0  # every slot given back


@needs_middlewares
async def test_a_dropped_connection_is_retried_for_idempotent_requests_only(rng: random.Random) -> None:
    """A pod that drops the connection after the request was sent: a GET goes to the other pod,
    a POST is not sent twice."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        pods[0].status = 0  # drops every connection
        lb = LoadBalancer(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            policy=EndpointPolicy([ready_else_serving_terminating]),  # no ejection: pod-0 stays
            rng=rng,
        )
        connector = BalancedConnector(lb, force_close=True)  # no keep-alive: aiohttp retries nothing
        async with lb, session_for(connector) as session:
            for _ in range(6):
                async with session.get(f"{URL}/") as r:
                    assert (await r.json())["pod"] == "pod-1"
            failures = 0
            for _ in range(6):
                try:
                    async with session.post(f"{URL}/", data=b"x") as r:
                        await r.read()
                except aiohttp.ServerDisconnectedError:
                    failures += 1
            assert failures == 3  # round robin: every other POST reached pod-0, never retried
            assert lb.status().inflight == 0


@needs_middlewares
async def test_status_not_listed_or_non_idempotent_is_not_retried(rng: random.Random) -> None:
    """Without retry_statuses a 503 reaches the caller; a POST 503 is never retried."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        pods[0].status = 503
        connector = BalancedConnector("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        async with session_for(connector) as session, session.get(f"{URL}/") as r:
            assert r.status == 503
        policy = RetryPolicy(retry_statuses=True)
        connector = BalancedConnector(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            retry=policy,
            rng=rng,
            algorithm="round_robin",
        )
        async with session_for(connector) as session:
            statuses = []
            for _ in range(4):
                async with session.post(f"{URL}/", data=b"x") as r:
                    statuses.append(r.status)
        assert sorted(statuses) == [200, 200, 503, 503]


@needs_middlewares
async def test_retries_stop_at_max_attempts_and_the_budget(rng: random.Random) -> None:
    """Every pod answers 503: a GET makes max_attempts attempts on distinct pods, then gets 503;
    a budget of 0 refuses every retry and counts it."""
    async with running_pods(3) as pods, asyncio.timeout(10):
        for pod in pods:
            pod.status = 503
        policy = RetryPolicy(retry_statuses=True, max_attempts=3)
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), retry=policy, rng=rng
        )
        async with session_for(connector) as session, session.get(f"{URL}/") as r:
            assert r.status == 503
        assert sorted(p.hits for p in pods) == [1, 1, 1]
        stingy = RetryPolicy(retry_statuses=True, budget_percent=0.0, budget_min_concurrency=0)
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), retry=stingy, rng=rng
        )
        async with session_for(connector) as session, session.get(f"{URL}/") as r:
            assert r.status == 503
        assert connector.balancers[0].status().retry_budget_exhausted == 1


@needs_middlewares
async def test_other_hosts_pass_through_and_a_wrong_connector_is_refused(rng: random.Random) -> None:
    """A host the connector does not balance goes through the middleware untouched."""
    async with running_pods(1) as pods, asyncio.timeout(10):
        connector = BalancedConnector("web.shop:http", source=StaticSource([]), rng=rng)
        async with session_for(connector) as session, session.get(f"http://127.0.0.1:{pods[0].port}/") as r:
            assert r.status == 200
    with pytest.raises(ConfigurationError, match="BalancedConnector"):
        BalancedMiddleware(aiohttp.TCPConnector)  # type: ignore[arg-type]


@pytest.mark.skipif(MIDDLEWARES, reason="this aiohttp has client middlewares")
async def test_an_aiohttp_without_middlewares_is_told_to_upgrade(rng: random.Random) -> None:
    """On aiohttp < 3.12 the middleware is a ConfigurationError naming the version to upgrade to."""
    connector = BalancedConnector("web.shop:http", source=StaticSource([]), rng=rng)
    try:
        with pytest.raises(ConfigurationError, match=r"aiohttp >= 3\.12"):
            BalancedMiddleware(connector)
    finally:
        await connector.close()


@needs_middlewares
async def test_a_request_dropped_by_every_pod_names_every_attempt(rng: random.Random) -> None:
    """A GET that every pod drops, retried by the middleware on the other pod: the
    ServerDisconnectedError (same class, from aiohttp's own) names both attempts and both pods
    (it said "1 attempt failed" and the last pod alone)."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        for pod in pods:
            pod.status = 0  # drops every connection
        lb = LoadBalancer(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            policy=EndpointPolicy([ready_else_serving_terminating]),  # no ejection
            rng=rng,
        )
        connector = BalancedConnector(lb, force_close=True)  # no keep-alive: aiohttp retries nothing
        async with lb, session_for(connector) as session:
            with pytest.raises(aiohttp.ServerDisconnectedError) as err:
                async with session.get(f"{URL}/"):
                    pass
            message = str(err.value)
            assert message.startswith("service web.shop:http: 2 attempts failed, on ")
            assert {pods[0].key, pods[1].key} == set(message.split(" on ", 1)[1].split(";")[0].split(", "))
            assert message.endswith("last error: ServerDisconnectedError: Server disconnected")
            assert isinstance(err.value.__cause__, aiohttp.ServerDisconnectedError)
            assert pods[0].hits == pods[1].hits >= 1  # aiohttp's own retry may run the middleware again
            assert lb.algorithm.total_inflight() == 0
