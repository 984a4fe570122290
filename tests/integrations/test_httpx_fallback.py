"""The Service-DNS fallback through BalancedTransport under a broken API: fake apiserver, real client."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from helpers_pods import SERVICE_HOST, refusing_port

from kube_balance import DiscoveryAuthError, LoadBalancer
from kube_balance.discovery import KubernetesSource
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport, NoEndpointsAvailable
from kube_balance.testing import FakeApiServer, FakeClock, Fault, Permissions, service

URL = f"http://{SERVICE_HOST}"
SERVICE_GET = "/api/v1/namespaces/shop/services/web"


def service_gets(api: FakeApiServer) -> int:
    """How many times the Service object was read."""
    return sum(1 for r in api.requests if r.path == SERVICE_GET)


@contextlib.asynccontextmanager
async def client_for(
    api: FakeApiServer, balancer_options: dict[str, object]
) -> AsyncIterator[tuple[BalancedTransport, httpx.AsyncClient]]:
    """A transport on a LoadBalancer with a KubernetesSource on a new API client, and an httpx client."""
    api_client = await asyncio.wait_for(api.new_api_client(), 10)
    try:
        ref = str(balancer_options.pop("service", "web.shop:http"))
        source = KubernetesSource(ref, api_client=api_client)
        balancer = LoadBalancer(ref, source=source, **balancer_options)  # type: ignore[arg-type]
        transport = BalancedTransport(balancer)
        async with httpx.AsyncClient(transport=transport) as client:
            yield transport, client
        await balancer.aclose()
    finally:
        await asyncio.wait_for(api_client.close(), 5)


async def test_forbidden_service_read_is_made_once_for_200_requests(rng: random.Random) -> None:
    """An API answering 403 for Services: 200 requests make 1 GET Service, not 200; status shows it."""
    slices_only = Permissions.allow("endpointslices:list", "endpointslices:watch", namespaces={"shop"})
    clock = FakeClock(1000.0)  # the backoff before the next read does not elapse during the test
    async with asyncio.timeout(30), FakeApiServer(tokens={"test-token": slices_only}) as api:
        api.apply(service("web", "shop"))
        async with client_for(api, {"rng": rng, "clock": clock}) as (transport, client):
            first = await asyncio.gather(*(client.get(f"{URL}/") for _ in range(100)), return_exceptions=True)
            error = transport.balancer.status().last_error
            for _ in range(100):
                with pytest.raises(NoEndpointsAvailable, match="services"):
                    await client.get(f"{URL}/")
    assert all(isinstance(r, NoEndpointsAvailable) for r in first)
    assert service_gets(api) == 1
    assert (
        isinstance(error, DiscoveryAuthError) and "services" in str(error) and 'verbs ["get"]' in str(error)
    )


async def test_an_api_that_never_answers_delays_no_request_beyond_the_startup_wait(
    rng: random.Random,
) -> None:
    """Everything stalls: 3 concurrent requests each fail within the startup wait, after 1 GET Service."""
    async with asyncio.timeout(30), FakeApiServer() as api:
        api.apply(service("web", "shop"))
        api.inject(Fault.stall(on="any", count=1000))
        async with client_for(api, {"rng": rng, "startup_timeout": 0.3}) as (transport, client):
            async with asyncio.timeout(3):  # the old code waited 30, 61 and 92 s
                results = await asyncio.gather(
                    *(client.get(f"{URL}/") for _ in range(3)), return_exceptions=True
                )
            assert all(isinstance(r, NoEndpointsAvailable) for r in results), results
            assert "no answer within 0.3 s" in str(results[0])
            assert "no answer within 0.3 s" in str(transport.balancer.status().last_error)
            assert service_gets(api) == 1


async def test_a_failing_fallback_names_itself_and_the_discovery_problem(rng: random.Random) -> None:
    """The fallback's connect error names the fallback host:port and the 403 that sent the request there."""
    nothing = Permissions.allow(namespaces={"shop"})
    port = refusing_port()
    options: dict[str, object] = {"rng": rng, "fallback": f"127.0.0.1:{port}"}
    async with (
        asyncio.timeout(30),
        FakeApiServer(tokens={"test-token": nothing}) as api,
        client_for(api, options) as (_, client),
    ):
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"{URL}/")
    message = str(info.value)
    assert f"the fallback 127.0.0.1:{port} failed" in message
    assert "service web.shop:http: no usable endpoint" in message
    assert "endpointslices" in message and "forbidden" in message.lower()
    assert type(info.value) is httpx.ConnectError and isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.request.url.host == SERVICE_HOST


class SilentPortSource(StaticSource):
    """No endpoints, and a Service port read that never answers."""

    async def service_port(self) -> int:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_the_request_connect_timeout_bounds_the_wait_for_the_fallback_port(rng: random.Random) -> None:
    """With a long startup wait, httpx's connect timeout still bounds the wait for the Service port."""
    balancer = LoadBalancer("web.shop:http", source=SilentPortSource([]), rng=rng, startup_timeout=60)
    transport = BalancedTransport(balancer)
    timeout = httpx.Timeout(5.0, connect=0.1)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client, asyncio.timeout(5):
        with pytest.raises(NoEndpointsAvailable, match=r"no answer within 0\.1 s"):
            await client.get(f"{URL}/")
    await balancer.aclose()
