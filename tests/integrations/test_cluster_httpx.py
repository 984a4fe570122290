"""BalancedTransport.cluster(): every Service through one httpx client, against the fake apiserver
with the real kubernetes_asyncio client and real pods on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from helpers_cluster import ForwardProxy, api_client, pod_slice, reads, two_port_service
from helpers_pods import running_pods

from kube_balance import ConfigurationError, DiscoveryUnauthorized, TooManyServices, UnknownServicePort
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, FakeClock, Fault, endpoint_slice, service, slice_endpoint


@contextlib.asynccontextmanager
async def cluster_client(
    api: FakeApiServer, proxy: ForwardProxy, **options: Any
) -> AsyncIterator[tuple[BalancedTransport, httpx.AsyncClient]]:
    """A cluster transport in namespace shop, other hosts through ``proxy``; closed on exit."""
    async with api_client(api) as client:
        transport = BalancedTransport.cluster(
            api_client=client,
            namespace="shop",
            passthrough=httpx.AsyncHTTPTransport(proxy=proxy.url),
            rng=random.Random(7),
            **options,
        )
        async with httpx.AsyncClient(transport=transport) as http:
            yield transport, http


async def pods_of(http: httpx.AsyncClient, url: str, n: int) -> Counter[str]:
    return Counter([(await http.get(url)).json()["pod"] for _ in range(n)])


async def test_several_services_and_every_name_form() -> None:
    """web (2 pods) and api (1 pod) through one client; every name form of web reaches its pods
    with the Host as written; an IP host passes through without asking the API."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(3) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(service("api", "shop"))
        api.apply(pod_slice("web", "shop", pods[0]))
        api.apply(pod_slice("web", "shop", pods[1]))
        api.apply(pod_slice("api", "shop", pods[2]))
        async with cluster_client(api, proxy, algorithm="round_robin") as (transport, http):
            with pytest.raises(LookupError, match=r"no Service yet.*\.balancers"):
                transport.balancer  # noqa: B018  # before any Service was used
            forms = [
                "web",
                "web.shop",
                "web.shop.svc",
                "web.shop.svc.cluster.local",
                "WEB.Shop.svc.cluster.local.",
            ]
            for host in forms:
                seen = await pods_of(http, f"http://{host}/", 4)
                assert seen == {"pod-0": 2, "pod-1": 2}, host
            assert (await http.get("http://api.shop/")).json() == {
                "pod": "pod-2",
                "host": "api.shop",
                "cookie": None,
            }
            assert pods[0].hosts[-1] == "web.shop.svc.cluster.local."  # httpx lowercases hosts
            assert sorted(transport.cluster_routes.watched) == ["shop/api", "shop/web"]  # type: ignore[union-attr]
            assert len(reads(api, "services", "web")) == 1  # read once for every name form
            assert transport.balancer is transport.balancers[0]

            before = len(api.requests)
            url = f"http://127.0.0.1:{pods[2].port}/"
            assert (await http.get(url)).json() == {"proxied": url}
            # No read for the IP host (a watch of web or api may still log its start meanwhile).
            assert [r for r in api.requests[before:] if r.verb != "watch"] == []


async def test_the_url_port_is_the_service_port() -> None:
    """Port 80 goes to the slices' 'http' port and 9090 to 'admin' (by the Service's port names);
    a port the Service lacks is an error naming the Service, the port and its ports."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(two_port_service("web", "shop", [("http", 80), ("admin", 9090)]))
        api.apply(
            endpoint_slice(
                "web",
                "shop",
                endpoints=[slice_endpoint("127.0.0.1")],
                ports=[{"name": "http", "port": pods[0].port}, {"name": "admin", "port": pods[1].port}],
            )
        )
        async with cluster_client(api, proxy) as (transport, http):
            assert (await http.get("http://web.shop/")).json()["pod"] == "pod-0"
            assert (await http.get("http://web.shop:80/")).json()["pod"] == "pod-0"
            assert (await http.get("http://web.shop:9090/")).json()["pod"] == "pod-1"
            with pytest.raises(UnknownServicePort) as err:
                await http.get("http://web.shop:8080/")
            assert str(err.value).startswith(
                "Service shop/web has no port 8080 (its ports: http=80, admin=9090)"
            )
            assert isinstance(err.value, ConfigurationError)
            assert len(reads(api, "services", "web")) == 1
            assert len(transport.balancers) == 2  # one balancer per Service port, one shared watch
            assert len([r for r in reads(api, "endpointslices", "web") if r.verb == "list"]) == 1


async def test_concurrent_first_requests_share_one_read_and_one_watch() -> None:
    """Twenty requests at once to a Service never seen: one Service read, one list, one watch."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        for pod in pods:
            api.apply(pod_slice("web", "shop", pod))
        async with cluster_client(api, proxy) as (_, http):
            answers = await asyncio.gather(*(http.get("http://web.shop/") for _ in range(20)))
            assert {r.status_code for r in answers} == {200}
            assert {r.json()["pod"] for r in answers} <= {"pod-0", "pod-1"}
            assert [r.verb for r in reads(api, "services", "web")] == ["get"]
            assert Counter(r.verb for r in reads(api, "endpointslices", "web")) == {"list": 1, "watch": 1}


async def test_idle_service_stops_and_restarts_on_the_next_request() -> None:
    """A Service idle for idle_timeout (fake clock) with nothing in flight stops its watch; an open
    response keeps it; the next request reads the Service again and restarts the watch."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(pod_slice("web", "shop", pods[0]))
        async with cluster_client(api, proxy, clock=clock, idle_timeout=60) as (transport, http):
            table = transport.cluster_routes
            assert table is not None
            assert (await http.get("http://web/")).status_code == 200
            balancer = transport.balancers[0]
            clock.advance(59)
            assert await table.sweep() == []
            async with http.stream("GET", "http://web/stream") as streaming:
                await pods[0].stream_started.wait()
                # That request came after service_refresh (30 s): it started a background re-read
                # of the Service. Let it land before the clock moves on (it stamps the read's time).
                while table._reads:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                clock.advance(120)
                assert await table.sweep() == []  # a response in flight keeps it
                pods[0].gate.set()
                await streaming.aread()
            clock.advance(60)
            assert await table.sweep() == ["shop/web"]
            assert table.watched == [] and transport.balancers == [] and not balancer.running
            assert not [r for r in api.requests if r.verb == "watch" and r.status == 0]

            assert (await http.get("http://web/")).json()["pod"] == "pod-0"
            assert table.watched == ["shop/web"]
            # the first request's read, the re-read after service_refresh, the read after the restart
            assert [r.verb for r in reads(api, "services", "web")] == ["get", "get", "get"]
            assert Counter(r.verb for r in reads(api, "endpointslices", "web"))["list"] == 2


async def test_the_idle_sweep_runs_by_itself() -> None:
    """With a short idle_timeout and the real clock, the background sweep stops the Service."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(pod_slice("web", "shop", pods[0]))
        async with cluster_client(api, proxy, idle_timeout=0.2) as (transport, http):
            assert (await http.get("http://web/")).status_code == 200
            table = transport.cluster_routes
            assert table is not None and table.watched == ["shop/web"]
            async with asyncio.timeout(5):
                while table.watched:  # noqa: ASYNC110 - bounded above
                    await asyncio.sleep(0.02)


async def test_the_cap_evicts_the_least_recently_used_idle_service() -> None:
    """max_services=2: a third Service stops the least recently used idle one; with both busy,
    TooManyServices names the cap."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(3) as pods, ForwardProxy() as proxy:
        for name, pod in zip(("a", "b", "c"), pods, strict=True):
            api.apply(service(name, "shop"))
            api.apply(pod_slice(name, "shop", pod))
        async with cluster_client(api, proxy, clock=clock, max_services=2) as (transport, http):
            table = transport.cluster_routes
            assert table is not None
            await http.get("http://a/")
            clock.advance(1)
            await http.get("http://b/")
            clock.advance(1)
            await http.get("http://a/")  # b is now the least recently used
            clock.advance(1)
            assert (await http.get("http://c/")).json()["pod"] == "pod-2"
            assert sorted(table.watched) == ["shop/a", "shop/c"]

            async with http.stream("GET", "http://a/stream"), http.stream("GET", "http://c/stream"):
                await asyncio.gather(pods[0].stream_started.wait(), pods[2].stream_started.wait())
                with pytest.raises(TooManyServices, match="cannot balance Service shop/b: 2 Services"):
                    await http.get("http://b/")
                pods[0].gate.set()
                pods[2].gate.set()


async def test_namespaces_restrict_what_is_balanced() -> None:
    """namespaces=["shop"]: web.other passes through unread; web.shop is balanced."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        for ns in ("shop", "other"):
            api.apply(service("web", ns))
            api.apply(pod_slice("web", ns, pods[0]))
        async with cluster_client(api, proxy, namespaces=["shop"]) as (_, http):
            assert (await http.get("http://web.other/x")).json() == {"proxied": "http://web.other/x"}
            assert not [r for r in api.requests if "/namespaces/other/" in r.path]
            assert (await http.get("http://web.shop/")).json()["pod"] == "pod-0"


async def test_headless_externalname_selectorless_and_missing_services() -> None:
    """Headless and selector-less Services with slices are balanced; ExternalName, a selector-less
    Service without slices and a Service that does not exist pass through to DNS unchanged."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods, ForwardProxy() as proxy:
        api.apply(service("headless", "shop", cluster_ip="None"))
        api.apply(pod_slice("headless", "shop", pods[0]))
        api.apply(service("manual", "shop", selector=None))
        api.apply(pod_slice("manual", "shop", pods[1]))  # written by the Service's owner
        api.apply(service("bare", "shop", selector=None))
        api.apply(service("ext", "shop", external_name="db.example.com"))
        api.apply(service("solo", "shop", ports=[{"port": 80, "targetPort": 8080}]))  # one unnamed port
        api.apply(pod_slice("solo", "shop", pods[1], port_name=""))
        async with cluster_client(api, proxy) as (_, http):
            assert (await http.get("http://headless.shop/")).json()["pod"] == "pod-0"
            assert (await http.get("http://solo.shop/")).json()["pod"] == "pod-1"
            assert (await http.get("http://manual.shop/")).json()["pod"] == "pod-1"
            for url in (
                "http://ext.shop/a",
                "http://bare.shop/b",
                "http://nope.shop/c",
                "http://example.com/d",
            ):
                assert (await http.get(url)).json() == {"proxied": url}
            assert not reads(api, "endpointslices", "ext")
            assert [r.status for r in reads(api, "services", "nope")] == [404]
            # Answers are remembered: a second round asks the API nothing.
            before = len(api.requests)
            for url in ("http://ext.shop/a", "http://nope.shop/c"):
                assert (await http.get(url)).json() == {"proxied": url}
            assert [r for r in api.requests[before:] if r.verb != "watch"] == []  # watches may log late


async def test_cluster_options_are_checked_at_construction() -> None:
    """A wrong cluster option fails when the transport is built, naming the option."""
    bad: list[tuple[dict[str, Any], str]] = [
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"max_services": 0}, "max_services"),
        ({"service_refresh": 0}, "service_refresh"),
        ({"service_refresh": float("nan")}, "service_refresh"),
        ({"namespaces": "shop"}, "namespaces"),
        ({"namespaces": []}, "namespaces"),
        ({"namespace": "Shop"}, "namespace"),
        ({"cluster_domain": "bad domain"}, "cluster_domain"),
        ({"fallback": "none"}, "fallback"),
        ({"algorithm": object()}, "algorithm"),
        ({"algorithm": "round_robbin"}, "algorithm='round_robbin'"),
        ({"passthrough": "proxy"}, "passthrough"),
    ]
    for options, name in bad:
        with pytest.raises(ConfigurationError, match=name):
            BalancedTransport.cluster(**options)


async def test_an_unreachable_api_passes_through_then_balances() -> None:
    """A 503 reading the Service passes its requests through (nothing to balance with); 5 s later
    (fake clock) the Service is read again and balanced."""
    clock = FakeClock()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(pod_slice("web", "shop", pods[0]))
        api.inject(Fault.http_error(503, on="get", path="/services/web"))
        async with cluster_client(api, proxy, clock=clock) as (_, http):
            assert (await http.get("http://web/")).json() == {"proxied": "http://web/"}
            assert (await http.get("http://web/")).json() == {"proxied": "http://web/"}  # not read again yet
            assert [r.status for r in reads(api, "services", "web")] == [503]
            clock.advance(5)
            assert (await http.get("http://web/")).json()["pod"] == "pod-0"
            assert [r.status for r in reads(api, "services", "web")] == [503, 200]


async def test_a_service_created_later_is_balanced_after_the_recheck() -> None:
    """No such Service: passed through, and not read again for 30 s (fake clock); once created,
    the next read finds it and balances; the sweep forgets expired answers."""
    clock = FakeClock()
    async with (
        asyncio.timeout(30),
        FakeApiServer() as api,
        running_pods(1) as pods,
        ForwardProxy() as proxy,
        cluster_client(api, proxy, clock=clock) as (transport, http),
    ):
        assert (await http.get("http://late/")).json() == {"proxied": "http://late/"}
        api.apply(service("late", "shop"))
        api.apply(pod_slice("late", "shop", pods[0]))
        clock.advance(29)
        assert (await http.get("http://late/")).json() == {"proxied": "http://late/"}
        assert (await http.get("http://gone/")).json() == {"proxied": "http://gone/"}
        clock.advance(1)
        assert (await http.get("http://late/")).json()["pod"] == "pod-0"
        assert [r.status for r in reads(api, "services", "late")] == [404, 200]
        table = transport.cluster_routes
        assert table is not None
        clock.advance(30)
        assert await table.sweep() == []
        assert list(table._services) == [("late", "shop")]  # "gone"'s answer is dropped


async def test_rejected_credentials_are_an_error_without_the_rbac_hint() -> None:
    """A 401 reading the Service raises DiscoveryUnauthorized; the RBAC hint is for 403s only."""
    async with asyncio.timeout(30), FakeApiServer() as api, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        async with cluster_client(api, proxy) as (_, http):
            api.set_tokens({"another-token": None})
            with pytest.raises(DiscoveryUnauthorized) as err:
                await http.get("http://web/")
            assert "401" in str(err.value) and "rbac-cluster" not in str(err.value)


async def test_a_closed_cluster_transport_refuses_requests() -> None:
    """After aclose() a request raises, as a closed named transport's does; it used to start the
    Service's watch again, which nothing then closed."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods, ForwardProxy() as proxy:
        api.apply(service("web", "shop"))
        api.apply(pod_slice("web", "shop", pods[0]))
        async with cluster_client(api, proxy) as (transport, http):
            assert (await http.get("http://web.shop/")).json()["pod"] == "pod-0"
        watches = len([r for r in api.requests if r.verb == "watch"])
        async with httpx.AsyncClient(transport=transport) as again:
            with pytest.raises(RuntimeError, match=r"the cluster transport \(connector\) has been closed"):
                await again.get("http://web.shop/")
        assert transport.balancers == []
        assert len([r for r in api.requests if r.verb == "watch"]) == watches
