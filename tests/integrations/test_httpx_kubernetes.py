"""BalancedTransport end to end: real kubernetes_asyncio client, fake apiserver, real pods."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport, NoEndpointsAvailable
from kube_balance.testing import FakeApiServer, Permissions, endpoint_slice, service, slice_endpoint

URL = f"http://{SERVICE_HOST}"


def slice_for(name: str, port: int, **conditions: Any) -> dict[str, Any]:
    """One EndpointSlice per pod: the pods share 127.0.0.1 and differ by port."""
    return endpoint_slice(
        "web",
        "shop",
        name=name,
        endpoints=[slice_endpoint("127.0.0.1", **conditions)],
        ports=[{"name": "http", "port": port}],
    )


async def until(condition: Callable[[], bool]) -> None:
    """Poll a condition on loop turns; bounded by the caller's timeout."""
    while not condition():  # noqa: ASYNC110 - the condition lives in the balancer, no event to await
        await asyncio.sleep(0.01)


async def test_watch_drives_the_spread_removal_and_fallback(rng: random.Random) -> None:
    """Slices from the API spread traffic; a removed pod stops getting it; none left: the fallback."""
    async with FakeApiServer() as api, running_pods(3) as pods:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for i, pod in enumerate(pods):
            api.apply(slice_for(f"web-{i}", pod.port))
        client_api = await api.new_api_client()
        try:
            source = KubernetesSource("web.shop:http", api_client=client_api)
            transport = BalancedTransport("web.shop:http", source=source, algorithm="round_robin", rng=rng)
            async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(20):
                await transport.balancer.wait_ready(10)
                await until(lambda: len(transport.balancer.eligible) == 3)
                seen = Counter([(await client.get(f"{URL}/")).json()["pod"] for _ in range(30)])
                assert seen == {"pod-0": 10, "pod-1": 10, "pod-2": 10}
                assert transport.balancer.status().resource_version is not None

                # pod-2 turns terminating (not ready) and then goes away: no more traffic for it.
                api.apply(slice_for("web-2", pods[2].port, ready=False, serving=True, terminating=True))
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
        finally:
            await client_api.close()


async def test_serving_terminating_pods_serve_when_none_is_ready(rng: random.Random) -> None:
    """During a full rollout (every pod terminating but serving) requests still reach them."""
    async with FakeApiServer() as api, running_pods(2) as pods:
        for i, pod in enumerate(pods):
            api.apply(slice_for(f"web-{i}", pod.port, ready=False, serving=True, terminating=True))
        client_api = await api.new_api_client()
        try:
            source = KubernetesSource("web.shop:http", api_client=client_api)
            transport = BalancedTransport("web.shop:http", source=source, algorithm="round_robin", rng=rng)
            async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(20):
                await transport.balancer.wait_ready(10)
                await until(lambda: len(transport.balancer.eligible) == 2)
                got = {(await client.get(f"{URL}/")).json()["pod"] for _ in range(10)}
            assert got == {"pod-0", "pod-1"}
            assert transport.balancer.status().counts["serving_terminating"] == 2
        finally:
            await client_api.close()


async def test_fallback_without_rbac_for_services_explains_the_missing_rule(rng: random.Random) -> None:
    """Allowed to watch EndpointSlices but not to get Services: the fallback error names the rule."""
    slices_only = Permissions.allow("endpointslices:list", "endpointslices:watch", namespaces={"shop"})
    async with FakeApiServer(tokens={"test-token": slices_only}) as api:
        api.apply(service("web", "shop"))
        client_api = await api.new_api_client()
        try:
            source = KubernetesSource("web.shop:http", api_client=client_api)
            transport = BalancedTransport("web.shop:http", source=source, rng=rng)
            async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(20):
                with pytest.raises(NoEndpointsAvailable) as info:
                    await client.get(f"{URL}/")
            message = str(info.value)
            assert "web.shop:http" in message and "services" in message and "'shop'" in message
            assert isinstance(info.value, httpx.ConnectError)
        finally:
            await client_api.close()
