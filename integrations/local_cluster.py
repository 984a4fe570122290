"""A Kubernetes cluster on one machine for the examples: the fake apiserver and pods on 127.0.0.1.

Not what you deploy: in a pod, the library finds the real API server itself (in-cluster config).
The examples import this to get a Service ``web.shop`` (named port ``http``) whose pods are small
aiohttp servers answering ``{"pod": NAME, "host": HOST, "affinity": X-AFFINITY}``, and a kubeconfig for
the fake apiserver that lists their EndpointSlices.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from kube_balance.testing import FakeApiServer, endpoint_slice, service, slice_endpoint


@dataclass
class LocalCluster:
    """The fake apiserver, the pods' ports (pod ``web-i`` listens on ``ports[i]``) and a kubeconfig."""

    api: FakeApiServer
    ports: list[int]
    kubeconfig: Path

    def set_pod(self, i: int, **conditions: bool) -> None:
        """Publish (or update) pod ``web-i``'s EndpointSlice: ``ready=False, terminating=True``..."""
        self.api.apply(pod_slice(f"web-{i}", self.ports[i], **conditions))

    def delete_pod(self, i: int) -> None:
        self.api.delete("EndpointSlice", "shop", f"web-{i}")


async def start_pod(stack: AsyncExitStack, name: str) -> int:
    """A 'pod': an aiohttp server on 127.0.0.1 answering with its name; returns its port."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response(
            {"pod": name, "host": request.host, "affinity": request.headers.get("X-Affinity")}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


def pod_slice(name: str, port: int, **conditions: bool) -> dict[str, object]:
    """One EndpointSlice per pod, so a pod can change or go alone."""
    return endpoint_slice(
        "web",
        "shop",
        name=name,
        endpoints=[slice_endpoint("127.0.0.1", **conditions)],
        ports=[{"name": "http", "port": port}],
    )


async def local_cluster(stack: AsyncExitStack, pods: int = 3) -> LocalCluster:
    """Start the fake apiserver and ``pods`` pods of the Service web.shop (closed with ``stack``)."""
    api = await stack.enter_async_context(FakeApiServer())
    ports = [await start_pod(stack, f"web-{i}") for i in range(pods)]
    api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
    for i, port in enumerate(ports):
        api.apply(pod_slice(f"web-{i}", port))
    kubeconfig = api.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", namespace="shop")
    return LocalCluster(api, ports, kubeconfig)


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait (at most ``seconds``) until ``condition()`` is true."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - bounded by the timeout
            await asyncio.sleep(0.01)
