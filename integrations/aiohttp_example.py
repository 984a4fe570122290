"""kube-balance with aiohttp, end to end on one machine: a fake cluster, three local pods, one client.

    python integrations/aiohttp_example.py

The client code is what you would write in a pod: a ``ClientSession`` over
``BalancedConnector("web.shop:http")``; only the source is pointed at the fake apiserver's
kubeconfig instead of the in-cluster config. Every request is balanced (12 sequential requests
over 3 pods land 4/4/4 under round robin, on kept-alive connections). Then a fourth pod is
published whose port refuses connections: the connector retries those requests on another pod
(nothing was sent) and the outlier detector ejects it, so no request fails.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from contextlib import AsyncExitStack

import aiohttp

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.aiohttp import BalancedConnector
from local_cluster import local_cluster, pod_slice, until


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    async with AsyncExitStack() as stack, asyncio.timeout(60):
        cluster = await local_cluster(stack, pods=3)

        connector = BalancedConnector(
            "web.shop:http",
            algorithm="round_robin",
            source=KubernetesSource("web.shop:http", kubeconfig=cluster.kubeconfig),
        )
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        (balancer,) = connector.balancers
        await balancer.wait_ready(10)
        await until(lambda: len(balancer.eligible) == 3)

        async def burst(label: str, n: int) -> None:
            pods: Counter[str] = Counter()
            for _ in range(n):
                async with session.get("http://web.shop/") as r:
                    r.raise_for_status()
                    reply = await r.json()
                    assert reply["host"] == "web.shop"  # the Host header stays the Service
                    pods[reply["pod"]] += 1
            print(f"{label:<34} " + "  ".join(f"{pod}: {pods[pod]:>3}" for pod in sorted(pods)))

        await burst("12 requests, 3 pods", 12)
        cluster.api.apply(pod_slice("web-3", closed_port()))
        await until(lambda: len(balancer.eligible) == 4)
        await burst("web-3 refuses connections", 300)
        status = balancer.status()
        print(f"{'failed requests':<34} 0")
        print(f"{'retried on another pod':<34} {status.retries}")
        print(f"{'ejected':<34} {', '.join(sorted(status.ejected)) or 'none'}")
        print(repr(balancer))


if __name__ == "__main__":
    asyncio.run(main())
