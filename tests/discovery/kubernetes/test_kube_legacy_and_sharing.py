"""Old clusters (core/v1 Endpoints fallback), one shared watch per Service, and service_port()."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from helpers_kube_discovery import Sink, Sleeper, make_source, requests, running, until

from kube_balance import DiscoveryAuthError, DiscoveryError
from kube_balance.discovery.kubernetes._shared import running_watches
from kube_balance.testing import FakeApiServer, Permissions, core_endpoints, endpoint_slice, service


async def test_falls_back_to_core_endpoints_with_one_warning(
    sleeper: Sleeper, caplog: pytest.LogCaptureFixture
) -> None:
    """Without discovery.k8s.io/v1 the source watches the Service's Endpoints object, warning once."""
    async with FakeApiServer(serve_discovery_v1=False, bookmark_interval=3600.0) as api:
        api.apply(core_endpoints("web", "shop", addresses=["10.0.0.1"], not_ready_addresses=["10.0.0.2"]))
        api.apply(core_endpoints("other", "shop", addresses=["10.9.9.9"]))
        client = await api.new_api_client()
        source, sink = make_source("web.shop:http", sleeper, api_client=client), Sink()
        try:
            with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
                async with running(source, sink):
                    await sink.wait_keys("10.0.0.1:8080", "10.0.0.2:8080")
                    assert {e.address: e.ready for e in sink.snapshots[-1]} == {
                        "10.0.0.1": True,
                        "10.0.0.2": False,
                    }
                    api.apply(core_endpoints("web", "shop", addresses=["10.0.0.2", "10.0.0.3"]))
                    await sink.wait_keys("10.0.0.2:8080", "10.0.0.3:8080")
                    api.delete("Endpoints", "shop", "web")
                    await sink.wait_for(lambda: sink.keys == [])
        finally:
            await client.close()
        core = [r for r in requests(api) if r.path == "/api/v1/namespaces/shop/endpoints"]
        assert {r.verb for r in core} == {"list", "watch"}
        assert all(r.query["fieldSelector"] == "metadata.name=web" for r in core)
        assert caplog.text.count("falling back to core/v1 Endpoints") == 1
        assert sink.errors == [] and sleeper.delays == []


async def test_two_sources_share_one_watch(api: Any, client: Any, sleeper: Sleeper) -> None:
    """Two sources for one Service: one list and one watch; each gets snapshots; the last out stops it."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    first, second = (
        make_source("web.shop:http", sleeper, api_client=client),
        make_source("web.shop:80", sleeper, api_client=client),
    )
    sink1, sink2 = Sink(), Sink()
    async with running(first, sink1):
        await sink1.wait_keys("10.0.0.1:8080")
        async with running(second, sink2):
            await sink2.wait_keys("10.0.0.1:8080")  # a late joiner gets the current set at once
            api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.2"]))
            await sink1.wait_keys("10.0.0.2:8080")
            await sink2.wait_keys("10.0.0.2:8080")
            assert len(requests(api, "list")) == 1 and len(requests(api, "watch")) == 1
            assert first.resource_version == second.resource_version == api.resource_version
        assert len(running_watches()) == 1  # the first source still holds it
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.3"]))
        await sink1.wait_keys("10.0.0.3:8080")
    assert running_watches() == {}


async def test_different_credentials_or_options_do_not_share_a_watch(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """Another ApiClient (other credentials) or other watch options get their own watch; equal ones share."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    other_client = await api.new_api_client()
    try:
        sources = [
            make_source("web.shop:http", sleeper, api_client=client),
            make_source("web.shop:http", sleeper, api_client=other_client),
            make_source("web.shop:http", sleeper, api_client=client, page_size=7),
            make_source("web.shop:http", sleeper, api_client=client),  # same as the first: shares
        ]
        sinks = [Sink() for _ in sources]
        async with contextlib.AsyncExitStack() as stack:
            for source, sink in zip(sources, sinks, strict=True):
                await stack.enter_async_context(running(source, sink))
                await sink.wait_keys("10.0.0.1:8080")
            assert len(running_watches()) == 3
            assert len(requests(api, "list")) == 3
    finally:
        await asyncio.wait_for(other_client.close(), 10)
    assert running_watches() == {}


async def test_different_services_get_different_watches(api: Any, client: Any, sleeper: Sleeper) -> None:
    """Sources for two Services run two watches, each with its own label selector."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    api.apply(endpoint_slice("api", "shop", endpoints=["10.0.1.1"]))
    sink1, sink2 = Sink(), Sink()
    web_source = make_source("web.shop:http", sleeper, api_client=client)
    api_source = make_source("api.shop:http", sleeper, api_client=client)
    async with running(web_source, sink1), running(api_source, sink2):
        await sink1.wait_keys("10.0.0.1:8080")
        await sink2.wait_keys("10.0.1.1:8080")
        assert len(running_watches()) == 2
        await until(lambda: len(requests(api, "watch")) == 2)
        assert {r.query["labelSelector"] for r in requests(api, "watch")} == {
            "kubernetes.io/service-name=web",
            "kubernetes.io/service-name=api",
        }


async def test_a_broken_sink_does_not_stop_the_shared_watch(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A sink that raises is logged; the other subscriber keeps receiving snapshots."""

    class Broken(Sink):
        def on_endpoints(self, snapshot: Any) -> None:
            raise RuntimeError("sink bug")

    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    good = Sink()
    async with running(make_source("web.shop:http", sleeper, api_client=client), Broken()):
        await until(lambda: len(requests(api, "watch")) == 1)
        async with running(make_source("web.shop:http", sleeper, api_client=client), good):
            api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.2"]))
            await good.wait_keys("10.0.0.2:8080")


async def test_service_port_resolves_names_and_numbers(api: Any, client: Any, sleeper: Sleeper) -> None:
    """service_port() maps a port name, a service port or a target port to the Service's port."""
    api.apply(service("web", "shop", ports=({"name": "http", "port": 80, "targetPort": 8080},)))
    for ref in ("web.shop:http", "web.shop:80", "web.shop:8080"):
        port = await asyncio.wait_for(make_source(ref, sleeper, api_client=client).service_port(), 5)
        assert port == 80, ref
    with pytest.raises(DiscoveryError, match="no port 'grpc'"):
        await asyncio.wait_for(make_source("web.shop:grpc", sleeper, api_client=client).service_port(), 5)
    with pytest.raises(DiscoveryError, match="404"):
        await asyncio.wait_for(make_source("nope.shop:http", sleeper, api_client=client).service_port(), 5)


async def test_service_port_403_names_services_get(api: Any, client: Any, sleeper: Sleeper) -> None:
    """Without RBAC to get Services, service_port() raises DiscoveryAuthError naming the rule."""
    api.apply(service("web", "shop"))
    api.set_tokens({"test-token": Permissions.endpoint_slice_reader()})
    with pytest.raises(DiscoveryAuthError, match=r'resources \["services"\], verbs \["get"\]'):
        await asyncio.wait_for(make_source("web.shop:http", sleeper, api_client=client).service_port(), 5)


async def test_numeric_service_port_maps_to_the_slice_port_name(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """web:80 on a two-port Service finds the slices' 'http' target port (8080), not the other one."""
    ports = (
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "metrics", "port": 9100, "targetPort": 9100},
    )
    api.apply(service("web", "shop", ports=ports))
    slice_ports = [
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "metrics", "port": 9100, "protocol": "TCP"},
    ]
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"], ports=slice_ports))
    sink = Sink()
    async with running(make_source("web.shop:80", sleeper, api_client=client), sink):
        await sink.wait_keys("10.0.0.1:8080")
    assert [r.path for r in requests(api, "get")] == ["/api/v1/namespaces/shop/services/web"]


async def test_numeric_port_without_service_rbac_matches_by_number(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """Without RBAC to get the Service, web:80 falls back to the slice's only port, and discovery works."""
    api.apply(service("web", "shop"))
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    api.set_tokens({"test-token": Permissions.endpoint_slice_reader()})
    sink = Sink()
    async with running(make_source("web.shop:80", sleeper, api_client=client), sink):
        await sink.wait_keys("10.0.0.1:8080")
    assert [r.status for r in requests(api, "get")] == [403]
    assert sink.errors == []


async def test_shared_watch_outlives_the_source_that_started_it(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """When the first source leaves, the watch it started keeps serving the second one."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    first, second = Sink(), Sink()
    owner = asyncio.create_task(make_source("web.shop:http", sleeper, api_client=client).run(first))
    try:
        await first.wait_keys("10.0.0.1:8080")
        async with running(make_source("web.shop:http", sleeper, api_client=client), second):
            await second.wait_keys("10.0.0.1:8080")
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)
            api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.2"]))
            await second.wait_keys("10.0.0.2:8080")
            assert len(requests(api, "watch")) == 1
    finally:
        owner.cancel()
        await asyncio.gather(owner, return_exceptions=True)
    assert running_watches() == {}
