"""BalancedTransport end to end: real kubernetes_asyncio client, fake apiserver, real pods."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from helpers_pods import SERVICE_HOST, pod_slice, running_pods

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport, NoEndpointsAvailable
from kube_balance.testing import FakeApiServer, Permissions, service

URL = f"http://{SERVICE_HOST}"


async def until(condition: Callable[[], bool]) -> None:
    """Poll a condition on loop turns; bounded by the caller's timeout."""
    while not condition():  # noqa: ASYNC110 - the condition lives in the balancer, no event to await
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watched(
    api: FakeApiServer, rng: random.Random, *, algorithm: str = "least_request", ready: int | None = None
) -> AsyncIterator[tuple[BalancedTransport, httpx.AsyncClient]]:
    """A transport fed by a KubernetesSource on a new API client, and an httpx client on it.

    ``ready``: wait (bounded) until the balancer's first sync and that many eligible endpoints.
    Everything inside runs under a 20 s timeout; the client, transport and API client close on exit.
    """
    client_api = await asyncio.wait_for(api.new_api_client(), 10)
    try:
        source = KubernetesSource("web.shop:http", api_client=client_api)
        transport = BalancedTransport("web.shop:http", source=source, algorithm=algorithm, rng=rng)
        async with asyncio.timeout(20), httpx.AsyncClient(transport=transport) as client:
            if ready is not None:
                await transport.balancer.wait_ready(10)
                await until(lambda: len(transport.balancer.eligible) == ready)
            yield transport, client
    finally:
        await asyncio.wait_for(client_api.close(), 5)


async def test_watch_drives_the_spread_removal_and_fallback(rng: random.Random) -> None:
    """Slices from the API spread traffic; a removed pod stops getting it; none left: the fallback."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(3) as pods:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for i, pod in enumerate(pods):
            api.apply(pod_slice(f"web-{i}", pod.port))
        async with watched(api, rng, algorithm="round_robin", ready=3) as (transport, client):
            seen = Counter([(await client.get(f"{URL}/")).json()["pod"] for _ in range(30)])
            assert seen == {"pod-0": 10, "pod-1": 10, "pod-2": 10}
            assert transport.balancer.status().resource_version is not None

            # pod-2 turns terminating (not ready) and then goes away: no more traffic for it.
            api.apply(pod_slice("web-2", pods[2].port, ready=False, serving=True, terminating=True))
            await until(lambda: len(transport.balancer.eligible) == 2)
            await transport.dispatcher.drained()
            assert pods[2].key not in transport.dispatcher.pools
            before = pods[2].hits
            assert {(await client.get(f"{URL}/")).json()["pod"] for _ in range(10)} == {"pod-0", "pod-1"}
            assert pods[2].hits == before

            # No endpoint left: the fallback resolves the named port from the Service object.
            for i in range(3):
                api.delete("EndpointSlice", "shop", f"web-{i}")
            await until(lambda: not transport.balancer.eligible)
            assert await transport.balancer.fallback_target() == ("web.shop.svc.cluster.local", 80)
            assert "total=0" in repr(transport.balancer)


async def test_serving_terminating_pods_serve_when_none_is_ready(rng: random.Random) -> None:
    """During a full rollout (every pod terminating but serving) requests still reach them."""
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(2) as pods:
        for i, pod in enumerate(pods):
            api.apply(pod_slice(f"web-{i}", pod.port, ready=False, serving=True, terminating=True))
        async with watched(api, rng, algorithm="round_robin", ready=2) as (transport, client):
            got = {(await client.get(f"{URL}/")).json()["pod"] for _ in range(10)}
        assert got == {"pod-0", "pod-1"}
        assert transport.balancer.status().counts["serving_terminating"] == 2


async def test_fallback_without_rbac_for_services_explains_the_missing_rule(rng: random.Random) -> None:
    """Allowed to watch EndpointSlices but not to get Services: the fallback error names the rule."""
    slices_only = Permissions.allow("endpointslices:list", "endpointslices:watch", namespaces={"shop"})
    async with asyncio.timeout(30), FakeApiServer(tokens={"test-token": slices_only}) as api:
        api.apply(service("web", "shop"))
        async with watched(api, rng) as (_, client):
            with pytest.raises(NoEndpointsAvailable) as info:
                await client.get(f"{URL}/")
        message = str(info.value)
        assert "web.shop:http" in message and "services" in message and "'shop'" in message
        assert isinstance(info.value, httpx.ConnectError)
