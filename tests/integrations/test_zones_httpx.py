"""Zone-aware routing end to end: fake apiserver, real pods in two zones, the httpx transport."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance import LoadBalancer, ZoneAware
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, endpoint_slice, slice_endpoint

URL = f"http://{SERVICE_HOST}"


def zoned_slice(name: str, port: int, zone: str, hints: tuple[str, ...] = ()) -> dict[str, Any]:
    return endpoint_slice(
        "web",
        "shop",
        name=name,
        endpoints=[slice_endpoint("127.0.0.1", zone=zone, hints=hints)],
        ports=[{"name": "http", "port": port}],
    )


async def until(condition: Any) -> None:
    while not condition():  # noqa: ASYNC110 - the state lives in the balancer
        await asyncio.sleep(0.01)


async def test_local_zone_spill_under_load_and_return(rng: random.Random) -> None:
    """Traffic stays in zone a; a sustained slow load spills to zone b; light traffic comes back."""
    async with asyncio.timeout(60), FakeApiServer() as api, running_pods(4) as pods:
        for pod, zone in zip(pods, "aabb", strict=True):
            api.apply(zoned_slice(pod.name, pod.port, zone))
        client_api = await asyncio.wait_for(api.new_api_client(), 10)
        zones = ZoneAware(environ={"KUBE_BALANCE_ZONE": "a"}, spill_at=3, return_at=1, hold=0.2)
        source = KubernetesSource("web.shop:http", api_client=client_api)
        balancer = LoadBalancer("web.shop:http", source=source, policy=zones.policy(), rng=rng)
        try:
            async with balancer, httpx.AsyncClient(transport=BalancedTransport(balancer)) as client:
                await balancer.wait_ready(10)
                await until(lambda: len(balancer.eligible) == 2)
                light = Counter([(await client.get(f"{URL}/")).json()["pod"] for _ in range(20)])
                assert set(light) == {"pod-0", "pod-1"}  # zone a only

                # 12 tasks keep slow requests going: 6 in flight per local endpoint, above 3.
                heavy: Counter[str] = Counter()

                async def worker() -> None:
                    for _ in range(6):
                        heavy[(await client.get(f"{URL}/slow", params={"delay": "0.05"})).json()["pod"]] += 1

                await asyncio.gather(*(worker() for _ in range(12)))
                status = balancer.status().zone
                assert status is not None and status.spills >= 1, status
                assert heavy["pod-2"] + heavy["pod-3"] > 0, heavy  # zone b took part of the load

                # Load gone: after the hold, one light request brings it back to zone a.
                await asyncio.sleep(0.3)
                await client.get(f"{URL}/")
                await until(lambda: not zones.status().spilling)
                after = Counter([(await client.get(f"{URL}/")).json()["pod"] for _ in range(20)])
                assert set(after) == {"pod-0", "pod-1"}
                assert balancer.status().inflight == 0
        finally:
            await asyncio.wait_for(client_api.close(), 5)


async def test_hints_followed_only_when_every_endpoint_has_them(rng: random.Random) -> None:
    """Complete forZones hints route zone a's client to the hinted pods; one unhinted slice: ignored."""
    async with asyncio.timeout(60), FakeApiServer() as api, running_pods(3) as pods:
        # The controller lent zone b's pod-1 to zone a (hints), pod-2 serves zone b.
        api.apply(zoned_slice("web-0", pods[0].port, "a", ("a",)))
        api.apply(zoned_slice("web-1", pods[1].port, "b", ("a",)))
        api.apply(zoned_slice("web-2", pods[2].port, "b", ("b",)))
        client_api = await asyncio.wait_for(api.new_api_client(), 10)
        zones = ZoneAware("a", environ={}, without_hints="all-zones")
        source = KubernetesSource("web.shop:http", api_client=client_api)
        balancer = LoadBalancer("web.shop:http", source=source, policy=zones.policy(), rng=rng)
        try:
            async with balancer, httpx.AsyncClient(transport=BalancedTransport(balancer)) as client:
                await balancer.wait_ready(10)
                await until(lambda: zones.status().mode == "zone-hints")
                hinted = {(await client.get(f"{URL}/")).json()["pod"] for _ in range(20)}
                assert hinted == {"pod-0", "pod-1"}

                api.apply(zoned_slice("web-2", pods[2].port, "b"))  # hints half-published
                await until(lambda: zones.status().mode == "all-zones")
                everywhere = {(await client.get(f"{URL}/")).json()["pod"] for _ in range(30)}
                assert everywhere == {"pod-0", "pod-1", "pod-2"}
        finally:
            await asyncio.wait_for(client_api.close(), 5)
