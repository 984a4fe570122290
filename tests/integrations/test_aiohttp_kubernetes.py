"""BalancedConnector end to end: real kubernetes_asyncio client, fake apiserver, real pods."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import aiohttp
from helpers_pods import SERVICE_HOST, pod_slice, running_pods

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.testing import FakeApiServer

URL = f"http://{SERVICE_HOST}"


async def until(condition: object) -> None:
    """Poll a condition on loop turns; bounded by the caller's timeout."""
    while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - state lives in the balancer
        await asyncio.sleep(0.01)


async def test_rolling_update_under_load_fails_no_request(rng: random.Random) -> None:
    """Every pod replaced (new ones ready, old ones terminating, removed, killed) while 20 tasks
    send requests (at least 1,500, and some after the last new pod joined: on a quiet machine
    1,500 requests could end before it did, and it got none): no request fails, every pod gets
    traffic, nothing stays in flight."""
    async with asyncio.timeout(60), FakeApiServer() as api, running_pods(6) as pods:
        old, new = pods[:3], pods[3:]
        for pod in old:
            api.apply(pod_slice(pod.name, pod.port))
        client_api = await asyncio.wait_for(api.new_api_client(), 10)
        source = KubernetesSource("web.shop:http", api_client=client_api)
        connector = BalancedConnector("web.shop:http", source=source, rng=rng)
        balancer = connector.balancers[0]
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await balancer.wait_ready(10)
                await until(lambda: len(balancer.eligible) == 3)
                done, results = 0, Counter[str]()
                rolled = asyncio.Event()

                async def worker(count: int) -> None:
                    nonlocal done
                    after = 0  # requests sent once every new pod has joined and every old one left
                    while count > 0 or after < 10:
                        async with session.get(f"{URL}/") as r:
                            assert r.status == 200
                            results[(await r.json())["pod"]] += 1
                        done, count = done + 1, count - 1
                        after += rolled.is_set()

                workers = asyncio.gather(*(worker(75) for _ in range(20)))
                for old_pod, new_pod in zip(old, new, strict=True):
                    api.apply(pod_slice(new_pod.name, new_pod.port, ready=False))
                    await asyncio.sleep(0.05)
                    api.apply(pod_slice(new_pod.name, new_pod.port))
                    api.apply(pod_slice(old_pod.name, old_pod.port, ready=False, terminating=True))
                    await asyncio.sleep(0.05)
                    api.delete("EndpointSlice", "shop", old_pod.name)
                    await until(lambda p=old_pod: p.key not in {e.key for e in balancer.eligible})
                    await old_pod.kill()
                rolled.set()
                await workers
            assert done >= 1500
            assert set(results) == {p.name for p in pods}
            assert balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
            assert {e.key for e in balancer.eligible} == {p.key for p in new}
        finally:
            await asyncio.wait_for(client_api.close(), 5)
