"""kube-balance with httpx, end to end on one machine: a fake cluster, three local pods, one client.

    python integrations/httpx_example.py

The client code is what you would write in a pod (``BalancedTransport("web.shop:http")``); only
the source is pointed at the fake apiserver's kubeconfig instead of the in-cluster config. The
script then rolls one pod out (terminating, then gone) and shows traffic following the slices.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from aiohttp import web

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, endpoint_slice, service, slice_endpoint


async def start_pod(stack: AsyncExitStack, name: str) -> int:
    """A 'pod': an aiohttp server on 127.0.0.1 answering with its name; returns its port."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"pod": name, "host": request.host})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


def pod_slice(name: str, port: int, **conditions: bool) -> dict[str, object]:
    return endpoint_slice(
        "web",
        "shop",
        name=name,
        endpoints=[slice_endpoint("127.0.0.1", **conditions)],
        ports=[{"name": "http", "port": port}],
    )


async def until(condition: object, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def main() -> None:
    async with AsyncExitStack() as stack, asyncio.timeout(60):
        api = await stack.enter_async_context(FakeApiServer())
        ports = [await start_pod(stack, f"web-{i}") for i in range(3)]
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for i, port in enumerate(ports):
            api.apply(pod_slice(f"web-{i}", port))
        kubeconfig = api.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", namespace="shop")

        transport = BalancedTransport(
            "web.shop:http", source=KubernetesSource("web.shop:http", kubeconfig=kubeconfig)
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
        api.apply(pod_slice("web-2", ports[2], ready=False, serving=True, terminating=True))
        await until(lambda: len(transport.balancer.eligible) == 2)
        await burst("web-2 terminating")
        api.delete("EndpointSlice", "shop", "web-2")
        await until(lambda: len(transport.balancer.snapshot) == 2)
        await burst("web-2 deleted")
        print(repr(transport.balancer))


if __name__ == "__main__":
    asyncio.run(main())
