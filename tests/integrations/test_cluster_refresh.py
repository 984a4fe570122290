"""Cluster mode follows a changed Service (service_refresh) and says when RBAC stops it from
watching a Service's EndpointSlices: the fake apiserver, the real kubernetes_asyncio client, real
pods on 127.0.0.1, httpx and aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from helpers_cluster import ForwardProxy, api_client, reads
from helpers_pods import Pod, running_pods

from kube_balance import DiscoveryAuthError, DiscoveryUnauthorized, UnknownServicePort
from kube_balance._cluster import ClusterRoutes
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import (
    FakeApiServer,
    FakeClock,
    Fault,
    Permissions,
    endpoint_slice,
    service,
    slice_endpoint,
)


@contextlib.asynccontextmanager
async def cluster_client(
    api: FakeApiServer, proxy: ForwardProxy, **options: Any
) -> AsyncIterator[tuple[ClusterRoutes[Any], httpx.AsyncClient]]:
    """A cluster transport in namespace shop (other hosts through ``proxy``) and its table."""
    async with api_client(api) as client:
        transport = BalancedTransport.cluster(
            api_client=client,
            namespace="shop",
            passthrough=httpx.AsyncHTTPTransport(proxy=proxy.url),
            rng=random.Random(7),
            **options,
        )
        async with httpx.AsyncClient(transport=transport) as http:
            assert transport.cluster_routes is not None
            yield transport.cluster_routes, http


def two_named_ports(pods: list[Pod]) -> dict[str, Any]:
    """web's one slice: port 'http' on pod-0's port, 'www' on pod-1's (the same address)."""
    return endpoint_slice(
        "web",
        "shop",
        endpoints=[slice_endpoint("127.0.0.1")],
        ports=[{"name": "http", "port": pods[0].port}, {"name": "www", "port": pods[1].port}],
    )


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (bounded: 5 s) for a background change."""
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 - the change happens in a background read
            await asyncio.sleep(0.01)
    assert check(), what


async def test_a_renamed_port_is_followed_after_service_refresh() -> None:
    """Service port 80 renamed from 'http' to 'www': not read again before service_refresh
    (fake clock); the first request after it is still served while the Service is read again in
    the background, the old balancer stops, and the next request goes to the 'www' pods."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80}]))
        api.apply(two_named_ports(pods))
        async with cluster_client(api, proxy, clock=clock, service_refresh=60) as (table, http):
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"
            old = table.balancers[0]
            api.apply(service("web", "shop", ports=[{"name": "www", "port": 80}]))
            clock.advance(59)
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"
            assert len(reads(api, "services", "web")) == 1
            clock.advance(1)
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"  # not held up by the read
            await until(lambda: not old.running, "the old balancer stops")
            assert [r.status for r in reads(api, "services", "web")] == [200, 200]
            assert (await http.get("http://web/")).json()["pod"] == "pod-1"
            assert [str(b.service) for b in table.balancers] == ["web.shop:www"]


async def test_a_service_made_externalname_or_deleted_passes_through() -> None:
    """A watched Service turned ExternalName passes through after the refresh (its watch ends);
    a deleted one too; a removed port is UnknownServicePort on the next request."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        for name in ("ext", "gone"):
            api.apply(service(name, "shop"))
            api.apply(
                endpoint_slice(
                    name,
                    "shop",
                    endpoints=[slice_endpoint("127.0.0.1")],
                    ports=[{"name": "http", "port": pods[0].port}],
                )
            )
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80}, {"name": "www", "port": 8080}]))
        api.apply(two_named_ports(pods))
        async with cluster_client(api, proxy, clock=clock) as (table, http):
            for url in ("http://ext/", "http://gone/", "http://web/", "http://web:8080/"):
                assert "pod" in (await http.get(url)).json()
            assert sorted(table.watched) == ["shop/ext", "shop/gone", "shop/web"]
            api.apply(service("ext", "shop", external_name="db.example.com"))
            api.delete("Service", "shop", "gone")
            api.apply(service("web", "shop", ports=[{"name": "http", "port": 80}]))
            clock.advance(30)
            await table.refresh()
            assert table.watched == ["shop/web"]
            assert [str(b.service) for b in table.balancers] == ["web.shop:http"]
            for url in ("http://ext/a", "http://gone/b"):
                assert (await http.get(url)).json() == {"proxied": url}
            with pytest.raises(UnknownServicePort, match=r"has no port 8080 \(its ports: http=80\)"):
                await http.get("http://web:8080/")
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"


async def test_a_retired_balancer_drains_before_it_closes() -> None:
    """A stream open on a port whose name changed keeps its balancer running (listed, draining)
    until it ends; the next sweep closes it."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80}]))
        api.apply(two_named_ports(pods))
        async with cluster_client(api, proxy, clock=clock) as (table, http):
            async with http.stream("GET", "http://web/stream") as streaming:
                await pods[0].stream_started.wait()
                old = table.balancers[0]
                api.apply(service("web", "shop", ports=[{"name": "www", "port": 80}]))
                clock.advance(30)
                await table.refresh()
                assert old.running and table.balancers == [old]  # draining, still listed
                assert (await http.get("http://web/")).json()["pod"] == "pod-1"
                assert old in table.balancers
                pods[0].gate.set()
                await streaming.aread()
            await table.sweep()
            assert not old.running and old not in table.balancers


async def test_a_failed_refresh_keeps_the_service_balanced(caplog: pytest.LogCaptureFixture) -> None:
    """A 503 re-reading a watched Service keeps its balancer serving (logged), and the read is
    tried again 5 s later."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(
            endpoint_slice(
                "web",
                "shop",
                endpoints=[slice_endpoint("127.0.0.1")],
                ports=[{"name": "http", "port": pods[0].port}],
            )
        )
        async with cluster_client(api, proxy, clock=clock) as (table, http):
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"
            api.inject(Fault.http_error(503, on="get", path="/services/web"))
            clock.advance(30)
            with caplog.at_level(logging.WARNING, logger="kube_balance"):
                await table.refresh()
            assert "its balancers go on with the last read" in caplog.text
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"
            clock.advance(5)
            await table.refresh()
            assert [r.status for r in reads(api, "services", "web")] == [200, 503, 200]
            assert table.watched == ["shop/web"]


async def test_an_endpointslice_403_is_an_error_naming_the_rule() -> None:
    """May get the Service but not watch its EndpointSlices: every request raises
    DiscoveryAuthError naming the rule and cluster mode's manifest (nothing goes to DNS); once
    granted, the watch's retry finds the pods."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(
            endpoint_slice(
                "web",
                "shop",
                endpoints=[slice_endpoint("127.0.0.1")],
                ports=[{"name": "http", "port": pods[0].port}],
            )
        )
        api.set_tokens({"test-token": Permissions.allow("services:get")})
        async with cluster_client(api, proxy) as (_, http):
            for _ in range(2):
                with pytest.raises(DiscoveryAuthError) as err:
                    await http.get("http://web/")
                assert 'resources ["endpointslices"], verbs ["list", "watch"]' in str(err.value)
                assert "rbac-cluster.yaml" in str(err.value)
            assert proxy.seen == []
            api.set_tokens(
                {
                    "test-token": Permissions.allow(
                        "services:get", "endpointslices:list", "endpointslices:watch"
                    )
                }
            )
            async with asyncio.timeout(10):
                while True:  # the watch retries with backoff (0.8 s, doubling)
                    with contextlib.suppress(DiscoveryAuthError):
                        assert (await http.get("http://web/")).json()["pod"] == "pod-0"
                        break
                    await asyncio.sleep(0.1)


async def test_an_endpointslice_401_is_raised_without_the_rbac_hint() -> None:
    """Credentials the API stops accepting after the Service read: DiscoveryUnauthorized, no RBAC hint."""
    async with asyncio.timeout(30), FakeApiServer() as api, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.inject(Fault.http_error(401, on="list", path="/endpointslices", count=100))
        async with cluster_client(api, proxy) as (_, http):
            with pytest.raises(DiscoveryUnauthorized) as err:
                await http.get("http://web/")
            assert "rbac-cluster" not in str(err.value)


async def test_aiohttp_raises_the_endpointslice_403_too() -> None:
    """The aiohttp cluster connector raises the same DiscoveryAuthError."""
    async with asyncio.timeout(30), FakeApiServer() as api:
        api.apply(service("web", "shop"))
        api.set_tokens({"test-token": Permissions.allow("services:get")})
        async with api_client(api) as client:
            connector = BalancedConnector.cluster(api_client=client, namespace="shop")
            async with aiohttp.ClientSession(connector=connector) as session:
                with pytest.raises(DiscoveryAuthError, match="endpointslices"):
                    async with session.get("http://web/"):
                        pass


async def test_a_request_whose_balancer_stops_while_it_starts_goes_on_with_the_new_one() -> None:
    """The first list of web's slices stalls; meanwhile the Service's port is renamed and re-read,
    so the balancer the request waits on stops: the request is served by the new one (no
    'dispatcher closed' error)."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80}]))
        api.apply(two_named_ports(pods))
        api.inject(Fault.stall(2.0, on="list", path="/endpointslices"))
        async with cluster_client(api, proxy, clock=clock) as (table, http):
            first = asyncio.ensure_future(http.get("http://web/"))
            await until(lambda: bool(table.balancers), "the first balancer starts")
            old = table.balancers[0]
            api.apply(service("web", "shop", ports=[{"name": "www", "port": 80}]))
            clock.advance(30)
            await table.refresh()
            assert not old.running
            assert (await first).json()["pod"] == "pod-1"
            assert [str(b.service) for b in table.balancers] == ["web.shop:www"]


async def test_a_service_read_403_is_logged_as_what_happens(caplog: pytest.LogCaptureFixture) -> None:
    """A Service the client may not read (403): the request raises DiscoveryAuthError naming the
    rule, and the warning says so (it said "passing its requests through", which it does not)."""
    async with asyncio.timeout(30), FakeApiServer() as api:
        api.apply(service("web", "shop"))
        api.set_tokens({"test-token": Permissions.allow("endpointslices:list", "endpointslices:watch")})
        async with api_client(api) as client:
            connector = BalancedConnector.cluster(api_client=client, namespace="shop")
            async with aiohttp.ClientSession(connector=connector) as session:
                with (
                    caplog.at_level(logging.WARNING, logger="kube_balance"),
                    pytest.raises(DiscoveryAuthError, match=r'resources \["services"\], verbs \["get"\]'),
                ):
                    async with session.get("http://web/"):
                        pass
        assert "its requests raise DiscoveryAuthError until it can be read" in caplog.text
        assert "passing its requests through" not in caplog.text
