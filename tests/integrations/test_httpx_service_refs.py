"""Service references through BalancedTransport: without a port (the only port), and short host names."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from helpers_pods import running_pods

from kube_balance import ConfigurationError, DiscoveryError, _service
from kube_balance.discovery import KubernetesSource
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport, NoEndpointsAvailable
from kube_balance.testing import FakeApiServer, endpoint_slice, service, slice_endpoint


async def until(condition: Callable[[], bool]) -> None:
    """Poll a condition on loop turns; bounded by the caller's timeout."""
    while not condition():  # noqa: ASYNC110 - the condition lives in the balancer
        await asyncio.sleep(0.01)


def pod_slice(name: str, ports: list[dict[str, object]]) -> dict[str, object]:
    """One EndpointSlice of web.shop for one pod on 127.0.0.1 with the given ports."""
    return endpoint_slice("web", "shop", name=name, endpoints=[slice_endpoint("127.0.0.1")], ports=ports)


@contextlib.asynccontextmanager
async def transport_for(
    api: FakeApiServer, ref: str, rng: random.Random, **options: object
) -> AsyncIterator[tuple[BalancedTransport, httpx.AsyncClient]]:
    """A BalancedTransport(ref) fed by a KubernetesSource on a new API client, and a client on it."""
    api_client = await asyncio.wait_for(api.new_api_client(), 10)
    try:
        source = KubernetesSource(ref, api_client=api_client)
        transport = BalancedTransport(ref, source=source, rng=rng, **options)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport) as client:
            yield transport, client
    finally:
        await asyncio.wait_for(api_client.close(), 5)


async def test_a_reference_without_port_balances_over_the_services_only_port(rng: random.Random) -> None:
    """BalancedTransport("web.shop"): the slices' single port, no extra API call (no GET Service)."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for i, pod in enumerate(pods):
            api.apply(pod_slice(f"web-{i}", [{"name": "http", "port": pod.port}]))
        async with transport_for(api, "web.shop", rng, algorithm="round_robin") as (transport, client):
            await transport.balancer.wait_ready(10)
            await until(lambda: len(transport.balancer.eligible) == 2)
            seen = {(await client.get("http://web.shop/")).json()["pod"] for _ in range(10)}
            assert transport.balancer.status().last_error is None
    assert seen == {"pod-0", "pod-1"}
    assert not [r for r in api.requests if "/services" in r.path]


async def test_a_reference_without_port_to_a_two_port_service_lists_the_ports(rng: random.Random) -> None:
    """Several ports: a configuration-style discovery error listing names and numbers, in status and errors."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(1) as pods:
        api.apply(
            pod_slice("web-0", [{"name": "http", "port": pods[0].port}, {"name": "metrics", "port": 9090}])
        )
        async with transport_for(api, "web.shop", rng, fallback="none") as (transport, client):
            await until(lambda: transport.balancer.status().last_error is not None)
            error = transport.balancer.status().last_error
            with pytest.raises(NoEndpointsAvailable) as info:
                await client.get("http://web.shop/")
    assert isinstance(error, DiscoveryError) and isinstance(error, ConfigurationError)
    listing = f"http={pods[0].port}, metrics=9090"
    assert listing in str(error) and "'web.shop:http'" in str(error)
    assert listing in str(info.value)
    assert pods[0].hits == 0


async def test_the_fallback_of_a_reference_without_port_reads_the_service_port(rng: random.Random) -> None:
    """No endpoint: the fallback uses the Service's only port, read once; two ports: an error listing them."""
    async with asyncio.timeout(30), FakeApiServer() as api:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 8000, "targetPort": 8080}]))
        async with transport_for(api, "web.shop", rng) as (transport, _):
            await transport.balancer.ensure_started()
            for _ in range(3):
                assert await transport.balancer.fallback_target() == ("web.shop.svc.cluster.local", 8000)
        assert len([r for r in api.requests if r.path == "/api/v1/namespaces/shop/services/web"]) == 1

        api.apply(
            service("web", "shop", ports=[{"name": "http", "port": 80}, {"name": "grpc", "port": 9000}])
        )
        async with transport_for(api, "web.shop", rng) as (transport, client):
            with pytest.raises(
                NoEndpointsAvailable, match=r"Service shop/web has several ports \(http=80, grpc=9000\)"
            ):
                await client.get("http://web.shop/")


async def test_short_host_names_are_balanced(
    rng: random.Random, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the Service's own namespace, web, web., web.shop., ... all go to the pods."""
    ns_file = tmp_path / "namespace"
    ns_file.write_text("shop\n")
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(ns_file))
    hosts = ["web", "web.", "web.shop", "web.shop.", "web.shop.svc", "web.shop.svc.cluster.local."]
    async with asyncio.timeout(20), running_pods(1) as pods:
        transport = BalancedTransport("web:http", source=StaticSource([pods[0].key]), rng=rng)
        async with httpx.AsyncClient(transport=transport) as client:
            for host in hosts:
                response = await client.get(f"http://{host}/")
                assert response.json()["pod"] == "pod-0", host
    assert pods[0].hits == len(hosts)
    assert transport._passthrough is None  # nothing went around the balancer
