"""The FastAPI integration in cluster mode: a client for every Service, declared next to a client
for a named Service, handed out by the dependency, forwarding affinity, closed at shutdown. The
fake apiserver and the pods run in a loop of their own (TestClient blocks the test's thread), and
under a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from helpers_cluster import pod_slice
from helpers_pods import Pod, running_pods
from test_fastapi import uvicorn_app

from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.fastapi import BalancedClients
from kube_balance.testing import FakeApiServer, service


@contextlib.contextmanager
def cluster_in_thread(tmp_path: Path) -> Iterator[tuple[list[Pod], str]]:
    """web.shop on pods 0-2 and api.shop on pod 3, on a fake apiserver; yields the pods and a
    kubeconfig for it. Served by an event loop of their own, stopped on exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    holder: list[tuple[list[Pod], str]] = []

    async def serve() -> None:
        async with FakeApiServer() as api, running_pods(4) as pods:
            api.apply(service("web", "shop"))
            api.apply(service("api", "shop"))
            for pod in pods[:3]:
                api.apply(pod_slice("web", "shop", pod))
            api.apply(pod_slice("api", "shop", pods[3]))
            holder.append((pods, str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield holder[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


async def get_json(client: Any, url: str, headers: dict[str, str] | None = None) -> Any:
    """GET ``url`` with an httpx client or an aiohttp session; the JSON body."""
    if isinstance(client, httpx.AsyncClient):
        return (await client.get(url, headers=headers)).json()
    async with client.get(url, headers=headers) as r:
        return await r.json()


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_a_cluster_client_next_to_a_named_one(kind: str, tmp_path: Path) -> None:
    """A named client (web.shop) and a cluster client in one app: the dependency hands out each;
    the cluster client balances any Service by its URL (web over its 3 pods, api); it starts no
    Service at startup and is closed, with its watches, at shutdown."""
    with cluster_in_thread(tmp_path) as (_, kubeconfig):
        clients = BalancedClients(startup_timeout=5)
        declare = clients.httpx if kind == "httpx" else clients.aiohttp
        declare_cluster = clients.httpx_cluster if kind == "httpx" else clients.aiohttp_cluster
        named = declare("web.shop:http", source=KubernetesSource("web.shop:http", kubeconfig=kubeconfig))
        anywhere = declare_cluster(kubeconfig=kubeconfig, namespace="shop", algorithm="round_robin")
        app = FastAPI(lifespan=clients.lifespan())
        seen: list[Any] = []

        @app.get("/named")
        async def via_named(client: Any = Depends(named)) -> Any:
            return await get_json(client, "/")

        @app.get("/cluster/{host}")
        async def via_cluster(host: str, client: Any = Depends(anywhere)) -> Any:
            seen.append(client)
            return await get_json(client, f"http://{host}/")

        with TestClient(app) as c:
            started = app.state.kube_balance_clients[anywhere]
            balancers = started._transport.balancers if kind == "httpx" else started.connector.balancers
            assert balancers == []  # nothing started before its first request
            web = Counter(c.get("/cluster/web").json()["pod"] for _ in range(6))
            assert web == {"pod-0": 2, "pod-1": 2, "pod-2": 2}
            assert c.get("/cluster/api.shop").json()["pod"] == "pod-3"
            assert c.get("/named").json()["pod"] in {"pod-0", "pod-1", "pod-2"}
            table = (started._transport if kind == "httpx" else started.connector).cluster_routes
            assert sorted(table.watched) == ["shop/api", "shop/web"]
            running = list(table.balancers)
        assert len({id(client) for client in seen}) == 1  # one client for the app, not per request
        assert app.state.kube_balance_clients == {}
        assert (seen[0].is_closed if kind == "httpx" else seen[0].closed) is True
        assert table.watched == [] and not any(b.running for b in running)


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_affinity_is_forwarded_through_a_cluster_client(kind: str, tmp_path: Path) -> None:
    """ring_hash keyed on the incoming X-User header, through a cluster client: each user stays
    on one of web's pods, and users spread."""
    with cluster_in_thread(tmp_path) as (_, kubeconfig):
        clients = BalancedClients()
        declare = clients.httpx_cluster if kind == "httpx" else clients.aiohttp_cluster
        anywhere = declare(
            forward_affinity="X-User", kubeconfig=kubeconfig, namespace="shop", algorithm="ring_hash"
        )
        app = FastAPI(lifespan=clients.lifespan())

        @app.get("/hello")
        async def hello(client: Any = Depends(anywhere)) -> Any:
            return await get_json(client, "http://web.shop/")

        with TestClient(app) as c:
            homes = {
                user: {c.get("/hello", headers={"X-User": user}).json()["pod"] for _ in range(4)}
                for user in (f"user-{i}" for i in range(20))
            }
    assert all(len(pods) == 1 for pods in homes.values())
    assert len({next(iter(p)) for p in homes.values()}) > 1


def test_a_bad_cluster_option_fails_at_declaration(tmp_path: Path) -> None:
    """A wrong cluster option is refused where the client is declared, for httpx and for aiohttp
    (whose connector is only built in the app's loop: its options are checked without it), with
    the option's name; nothing was declared."""
    clients = BalancedClients()
    with pytest.raises(ValueError, match="idle_timeout"):
        clients.httpx_cluster(idle_timeout=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        clients.aiohttp_cluster(idle_timeout=0)
    app = FastAPI(lifespan=clients.lifespan())
    with TestClient(app):  # the app starts: no client was declared
        pass


@pytest.mark.slow
async def test_cluster_client_under_uvicorn(tmp_path: Path) -> None:
    """Under uvicorn, the test app's cluster client finds web.shop's 3 pods through the fake
    apiserver, and a streamed proxy response whose caller disconnects puts its pod back."""
    async with running_pods(3) as pods, FakeApiServer() as api:
        api.apply(service("web", "shop"))
        for pod in pods:
            api.apply(pod_slice("web", "shop", pod))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        env = {"KUBECONFIG": str(kubeconfig), "CLUSTER": "1"}
        # A long client timeout: the first request imports the Kubernetes client in the server.
        async with uvicorn_app(env) as base, httpx.AsyncClient(timeout=30) as client, asyncio.timeout(60):
            seen = Counter([(await client.get(f"{base}/hello")).json()["pod"] for _ in range(30)])
            assert set(seen) == {"pod-0", "pod-1", "pod-2"}
            async with client.stream("GET", f"{base}/proxy/stream") as r:
                assert await r.aiter_raw().__anext__() == b"first;"
                assert (await client.get(f"{base}/debug/inflight")).json() == 1
            for _ in range(100):  # bounded: the server notices the disconnect within a few turns
                if (await client.get(f"{base}/debug/inflight")).json() == 0:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get(f"{base}/debug/inflight")).json() == 0


def test_the_module_wide_registry_declares_a_cluster_client(tmp_path: Path) -> None:
    """balanced_cluster_client() + balanced_lifespan: the same cluster client on the module-wide
    registry; a wrong kind is refused at declaration."""
    from kube_balance import ConfigurationError
    from kube_balance.integrations import fastapi as kb_fastapi

    with pytest.raises(ConfigurationError, match="kind"):
        kb_fastapi.balanced_cluster_client(kind="grpc")  # type: ignore[arg-type]
    with cluster_in_thread(tmp_path) as (_, kubeconfig):
        anywhere = kb_fastapi.balanced_cluster_client(kubeconfig=kubeconfig, namespace="shop")
        try:
            app = FastAPI(lifespan=kb_fastapi.balanced_lifespan)

            @app.get("/")
            async def handler(client: Any = Depends(anywhere)) -> Any:
                return await get_json(client, "http://api/")

            with TestClient(app) as c:
                assert c.get("/").json()["pod"] == "pod-3"
        finally:
            kb_fastapi._default._declared.remove(anywhere)  # leave the module-wide registry as found
