"""kube-balance with httpx, end to end on one machine: a fake cluster, three local pods, one client.

    python integrations/httpx_example.py

The client code is what you would write in a pod (``BalancedTransport("web.shop:http")``); only
the source is pointed at the fake apiserver's kubeconfig instead of the in-cluster config.
``local_cluster.py``, next to this file, stands in for the cluster: the fake apiserver with the
Service ``web.shop`` and its pods, small aiohttp servers on 127.0.0.1 answering with their name.
The script then rolls one pod out (terminating, then gone) and shows traffic following the slices.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import httpx

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport
from local_cluster import local_cluster, until


async def main() -> None:
    async with AsyncExitStack() as stack, asyncio.timeout(60):
        cluster = await local_cluster(stack, pods=3)

        transport = BalancedTransport(
            "web.shop:http", source=KubernetesSource("web.shop:http", kubeconfig=cluster.kubeconfig)
        )
        client = await stack.enter_async_context(httpx.AsyncClient(transport=transport))
        await transport.balancer.wait_ready(10)
        await until(lambda: len(transport.balancer.eligible) == 3)

        async def burst(label: str) -> None:
            replies = [(await client.get("http://web.shop/")).json() for _ in range(300)]
            counts = Counter(r["pod"] for r in replies)
            print(f"{label:<34} " + "  ".join(f"{pod}: {counts[pod]:>3}" for pod in sorted(counts)))
            assert {r["host"] for r in replies} == {"web.shop"}  # the Host header stays the Service

        print(repr(transport.balancer))
        await burst("3 ready pods")
        cluster.set_pod(2, ready=False, serving=True, terminating=True)
        await until(lambda: len(transport.balancer.eligible) == 2)
        await burst("web-2 terminating")
        cluster.delete_pod(2)
        await until(lambda: len(transport.balancer.snapshot) == 2)
        await burst("web-2 deleted")
        print(repr(transport.balancer))


if __name__ == "__main__":
    asyncio.run(main())
