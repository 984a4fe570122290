"""BalancedConnector.cluster(): every Service through one aiohttp session, against the fake
apiserver with the real kubernetes_asyncio client and real pods on 127.0.0.1. Passed-through
requests go to a forward proxy (the session's own proxy= option, which balanced requests ignore)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from helpers_cluster import ForwardProxy, api_client, pod_slice, reads, two_port_service
from helpers_pods import running_pods

from kube_balance import ConfigurationError, RetryPolicy, TooManyServices, UnknownServicePort
from kube_balance.integrations.aiohttp import BalancedConnector, BalancedMiddleware
from kube_balance.testing import FakeApiServer, FakeClock, endpoint_slice, service, slice_endpoint


@contextlib.asynccontextmanager
async def cluster_session(
    api: FakeApiServer, **options: Any
) -> AsyncIterator[tuple[BalancedConnector, aiohttp.ClientSession]]:
    """A cluster connector in namespace shop and a session on it; closed on exit."""
    async with api_client(api) as client:
        connector = BalancedConnector.cluster(
            api_client=client, namespace="shop", rng=random.Random(7), **options
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            yield connector, session


async def get_json(session: aiohttp.ClientSession, url: str, proxy: str | None = None) -> Any:
    async with session.get(url, proxy=proxy) as r:
        return await r.json()


async def test_several_services_name_forms_and_pass_through() -> None:
    """web and api through one session, every name form; other hosts go to the proxy unchanged."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(3) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(service("api", "shop"))
        api.apply(pod_slice("web", "shop", pods[0]))
        api.apply(pod_slice("web", "shop", pods[1]))
        api.apply(pod_slice("api", "shop", pods[2]))
        async with cluster_session(api, algorithm="round_robin") as (connector, session):
            for host in ("web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local", "WEB.shop.svc."):
                seen = Counter(
                    [(await get_json(session, f"http://{host}/", proxy.url))["pod"] for _ in range(4)]
                )
                assert seen == {"pod-0": 2, "pod-1": 2}, host
            assert (await get_json(session, "http://api.shop/"))["pod"] == "pod-2"
            assert sorted(connector.cluster_routes.watched) == ["shop/api", "shop/web"]  # type: ignore[union-attr]
            assert proxy.seen == []  # balanced requests dial pods directly, whatever the proxy
            assert await get_json(session, "http://example.com/x", proxy.url) == {
                "proxied": "http://example.com/x"
            }
        # Closing the session closed the connector's Service table too: nothing watched, no task.
        assert connector.cluster_routes.watched == []  # type: ignore[union-attr]
        assert connector.cluster_routes._sweeper._task is None  # type: ignore[union-attr]


async def test_port_mapping_and_a_wrong_port() -> None:
    """Service port 80 -> slice port 'http', 9090 -> 'admin'; port 81 names the Service and its ports."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods:
        api.apply(two_port_service("web", "shop", [("http", 80), ("admin", 9090)]))
        api.apply(
            endpoint_slice(
                "web",
                "shop",
                endpoints=[slice_endpoint("127.0.0.1")],
                ports=[{"name": "http", "port": pods[0].port}, {"name": "admin", "port": pods[1].port}],
            )
        )
        async with cluster_session(api) as (_, session):
            assert (await get_json(session, "http://web.shop/"))["pod"] == "pod-0"
            assert (await get_json(session, "http://web.shop:9090/"))["pod"] == "pod-1"
            with pytest.raises(
                UnknownServicePort,
                match=r"Service shop/web has no port 81 \(its ports: http=80, admin=9090\)",
            ):
                await session.get("http://web.shop:81/")


async def test_concurrent_first_requests_share_one_watch() -> None:
    """Twenty first requests at once: one Service read, one list, one watch."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods:
        api.apply(service("web", "shop"))
        for pod in pods:
            api.apply(pod_slice("web", "shop", pod))
        async with cluster_session(api) as (_, session):
            answers = await asyncio.gather(*(get_json(session, "http://web.shop/") for _ in range(20)))
            assert {a["pod"] for a in answers} <= {"pod-0", "pod-1"}
            assert [r.verb for r in reads(api, "services", "web")] == ["get"]
            assert Counter(r.verb for r in reads(api, "endpointslices", "web")) == {"list": 1, "watch": 1}


async def test_idle_stop_restart_and_cap() -> None:
    """Idle (fake clock) stops a Service; the next request restarts it; the cap evicts the least
    recently used idle Service and refuses when all are busy."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(3) as pods:
        for name, pod in zip(("a", "b", "c"), pods, strict=True):
            api.apply(service(name, "shop"))
            api.apply(pod_slice(name, "shop", pod))
        async with cluster_session(api, clock=clock, idle_timeout=60, max_services=2) as (connector, session):
            table = connector.cluster_routes
            assert table is not None
            await get_json(session, "http://a/")
            clock.advance(60)
            assert await table.sweep() == ["shop/a"]
            assert (await get_json(session, "http://a/"))["pod"] == "pod-0"
            assert [r.verb for r in reads(api, "services", "a")] == ["get", "get"]

            clock.advance(1)
            await get_json(session, "http://b/")
            clock.advance(1)
            await get_json(session, "http://c/")  # a is the least recently used: evicted
            assert sorted(table.watched) == ["shop/b", "shop/c"]
            async with session.get("http://b/stream"), session.get("http://c/stream"):
                with pytest.raises(TooManyServices):
                    await session.get("http://a/")
                pods[1].gate.set()
                pods[2].gate.set()


async def test_namespaces_and_special_services() -> None:
    """namespaces=["shop"] leaves other namespaces unread; headless and selector-less Services
    with slices are balanced; ExternalName, slice-less and missing Services pass through."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(service("headless", "shop", cluster_ip="None"))
        api.apply(pod_slice("headless", "shop", pods[0]))
        api.apply(service("manual", "shop", selector=None))
        api.apply(pod_slice("manual", "shop", pods[1]))
        api.apply(service("bare", "shop", selector=None))
        api.apply(service("ext", "shop", external_name="db.example.com"))
        api.apply(service("web", "other"))
        api.apply(pod_slice("web", "other", pods[0]))
        async with cluster_session(api, namespaces=["shop"]) as (_, session):
            assert (await get_json(session, "http://headless.shop/"))["pod"] == "pod-0"
            assert (await get_json(session, "http://manual/"))["pod"] == "pod-1"
            for url in (
                "http://ext.shop/a",
                "http://bare.shop/b",
                "http://nope.shop/c",
                "http://web.other/d",
            ):
                assert await get_json(session, url, proxy.url) == {"proxied": url}
            assert not [r for r in api.requests if "/namespaces/other/" in r.path]
            assert not reads(api, "endpointslices", "ext")


@pytest.mark.skipif(
    "middlewares" not in inspect.signature(aiohttp.ClientSession.__init__).parameters,
    reason="client middlewares need aiohttp >= 3.12",
)
async def test_the_middleware_retries_in_cluster_mode() -> None:
    """BalancedMiddleware on a cluster connector retries a 503 on the Service's other pod."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods:
        api.apply(service("web", "shop"))
        for pod in pods:
            api.apply(pod_slice("web", "shop", pod))
        pods[0].status = 503
        async with api_client(api) as client:
            connector = BalancedConnector.cluster(
                api_client=client,
                namespace="shop",
                algorithm="round_robin",
                retry=RetryPolicy(retry_statuses=True),
            )
            async with aiohttp.ClientSession(
                connector=connector, middlewares=(BalancedMiddleware(connector),)
            ) as session:
                for _ in range(4):
                    async with session.get("http://web/") as r:
                        assert r.status == 200 and (await r.json())["pod"] == "pod-1"


async def test_an_unknown_algorithm_fails_at_construction() -> None:
    """A misspelt algorithm is refused by ``cluster()``, not by the first request to each Service."""
    with pytest.raises(
        ConfigurationError, match=r"^cluster algorithm='round_robbin' is invalid: expected one of "
    ):
        BalancedConnector.cluster(algorithm="round_robbin")
