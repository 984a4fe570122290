"""The demo's embedded cluster: a fake API server, fleets of real pods, balanced clients.

Services in namespace ``shop``: ``web`` (HTTP/1.1 pods) and ``web-h2`` (h2c pods), each with one
EndpointSlice per pod, and, when a scene asks for it, ``orders`` (a few HTTP/1.1 pods behind
Service port 9090 named ``http``: the cluster scene's second Service). Clients discover them with
a real ``KubernetesSource`` through a kubeconfig pointing at the fake API server, exactly as in a
cluster with ``kubeconfig=None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..discovery import KubernetesSource
from ..testing import FakeApiServer, PodFleet, service

if TYPE_CHECKING:
    import aiohttp
    import httpx

    from .._balancer import LoadBalancer

NAMESPACE = "shop"
WEB = "web"  # HTTP/1.1 pods
WEB_H2 = "web-h2"  # h2c pods
ORDERS = "orders"  # HTTP/1.1 pods behind Service port ORDERS_PORT (started only when asked)
ORDERS_PORT = 9090
LATENCY = (0.015, 0.025)  # each pod's service time, seconds (Linkerd's "Beyond Round Robin", 10x down)


@dataclass
class Cluster:
    api: FakeApiServer
    web: PodFleet
    h2: PodFleet
    kubeconfig: str
    orders: PodFleet | None = None

    def source(self, name: str) -> KubernetesSource:
        return KubernetesSource(f"{name}.{NAMESPACE}:http", kubeconfig=self.kubeconfig)

    @contextlib.asynccontextmanager
    async def httpx(
        self, name: str = WEB, **options: Any
    ) -> AsyncIterator[tuple[httpx.AsyncClient, LoadBalancer]]:
        """An httpx client with a ``BalancedTransport`` for Service ``name``, once it sees every pod."""
        import httpx

        from ..integrations.httpx import BalancedTransport

        transport = BalancedTransport(f"{name}.{NAMESPACE}:http", source=self.source(name), fallback="none",
                                      **options)  # fmt: skip
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            await self.ready(transport.balancer, self.h2 if name == WEB_H2 else self.web)
            yield client, transport.balancer

    @contextlib.asynccontextmanager
    async def aiohttp(
        self, name: str = WEB, **options: Any
    ) -> AsyncIterator[tuple[aiohttp.ClientSession, LoadBalancer]]:
        """An aiohttp session with a ``BalancedConnector`` for Service ``name``, once it sees every pod."""
        import aiohttp

        from ..integrations.aiohttp import BalancedConnector

        connector = BalancedConnector(f"{name}.{NAMESPACE}:http", source=self.source(name), fallback="none",
                                      **options)  # fmt: skip
        async with aiohttp.ClientSession(connector=connector) as session:
            await self.ready(connector.balancers[0], self.h2 if name == WEB_H2 else self.web)
            yield session, connector.balancers[0]

    async def ready(self, balancer: LoadBalancer, fleet: PodFleet) -> None:
        """Wait until ``balancer`` sends traffic to exactly the fleet's pods."""
        await balancer.wait_ready(15)
        keys = {p.key for p in fleet.pods}
        await until(lambda: {e.key for e in balancer.eligible} == keys)

    def slice_conditions(
        self, fleet: PodFleet, name: str, *, ready: bool, serving: bool = True, terminating: bool = False
    ) -> None:
        """Apply the EndpointSlice of pod ``name`` of ``fleet`` with these conditions."""
        service = WEB_H2 if fleet is self.h2 else WEB
        slice_ = fleet.endpoint_slice(
            name, service, NAMESPACE, ready=ready, serving=serving, terminating=terminating
        )
        self.api.apply(slice_)


async def until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    """Poll ``condition`` every 5 ms for at most ``seconds``."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the state lives in the balancer
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(pods: int, *, seed: int = 0, orders: int = 0) -> AsyncIterator[Cluster]:
    """Start everything (about 2 s: the pods' interpreters start in parallel with the API server);
    ``orders`` pods of Service ``orders`` too when it is not 0."""
    async with contextlib.AsyncExitStack() as stack:
        web = PodFleet(pods, latency=LATENCY, seed=seed, prefix=WEB)
        h2 = PodFleet(pods, http2=True, latency=LATENCY, seed=seed + 1, prefix=WEB_H2)
        extra = PodFleet(orders, latency=LATENCY, seed=seed + 2, prefix=ORDERS) if orders else None
        api = FakeApiServer()
        fleets = [web, h2, *([extra] if extra else [])]
        started = await asyncio.gather(api.start(), *(f.start() for f in fleets), return_exceptions=True)
        for closer, outcome in zip((api.stop, *(f.aclose for f in fleets)), started, strict=True):
            if not isinstance(outcome, BaseException):
                stack.push_async_callback(closer)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        web.publish(api, WEB, NAMESPACE)
        h2.publish(api, WEB_H2, NAMESPACE)
        if extra is not None:
            publish_orders(api, extra)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kube-balance-demo-")))
        kubeconfig = str(api.write_kubeconfig(folder / "kubeconfig", namespace=NAMESPACE))
        yield Cluster(api, web, h2, kubeconfig, extra)


def publish_orders(api: FakeApiServer, fleet: PodFleet) -> None:
    """Service ``orders``: port 9090 named ``http`` (the pods' port of that name) and a metrics
    port the slices do not have; one EndpointSlice per pod."""
    ports = [{"name": "metrics", "port": 9100, "targetPort": "metrics"},
             {"name": "http", "port": ORDERS_PORT, "targetPort": "http"}]  # fmt: skip
    api.apply(service(ORDERS, NAMESPACE, ports=ports))
    for pod in fleet.pods:
        api.apply(fleet.endpoint_slice(pod.name, ORDERS, NAMESPACE))
