"""The FastAPI integration: clients started with the app, a dependency, affinity forwarding, put exact."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from helpers_pods import Pod, pod_slice, running_pods

from kube_balance import ConfigurationError, HedgePolicy, RetryPolicy
from kube_balance.discovery import StaticSource
from kube_balance.integrations.fastapi import BalancedClients
from kube_balance.testing import FakeApiServer

NEEDS_MIDDLEWARES = pytest.mark.skipif(
    "middlewares" not in inspect.signature(aiohttp.ClientSession.__init__).parameters,
    reason="client middlewares (BalancedMiddleware) need aiohttp >= 3.12",
)

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def pods_in_thread(count: int) -> Iterator[list[Pod]]:
    """Pods served by an event loop of their own (TestClient blocks the test's thread)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    holder: list[list[Pod]] = []

    async def serve() -> None:
        async with running_pods(count) as pods:
            holder.append(pods)
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


@contextlib.contextmanager
def app_env(**env: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_app() -> FastAPI:
    sys.path.insert(0, str(HERE))
    try:
        import fastapi_app

        return fastapi_app.create_app()
    finally:
        sys.path.remove(str(HERE))


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_dependency_reaches_three_pods_under_testclient(kind: str) -> None:
    """Under TestClient (as a context manager) the handler's shared client spreads over 3 pods."""
    with pods_in_thread(3) as pods, app_env(PODS=",".join(p.key for p in pods), CLIENT_KIND=kind):
        app = load_app()
        with TestClient(app) as client:
            seen = Counter(client.get("/hello").json()["pod"] for _ in range(30))
            assert set(seen) == {"pod-0", "pod-1", "pod-2"}
            if kind == "httpx":
                assert client.get("/debug/inflight").json() == 0
        assert app.state.kube_balance_clients == {}  # closed and dropped at shutdown


def test_affinity_is_forwarded_from_the_incoming_request() -> None:
    """ring_hash keyed on the incoming X-User header keeps each user on one pod, users spread."""
    with (
        pods_in_thread(3) as pods,
        app_env(PODS=",".join(p.key for p in pods), ALGORITHM="ring_hash"),
        TestClient(load_app()) as client,
    ):
        homes = {
            user: {client.get("/hello", headers={"X-User": user}).json()["pod"] for _ in range(5)}
            for user in (f"user-{i}" for i in range(20))
        }
    assert all(len(pods_seen) == 1 for pods_seen in homes.values())
    assert len({next(iter(p)) for p in homes.values()}) > 1


def test_client_is_created_once_per_app_not_per_request() -> None:
    """Every request gets the same client object; a second app gets its own."""
    clients = BalancedClients(startup_timeout=0)
    dep = clients.httpx("web.shop:http", source=StaticSource([]), fallback="none")
    seen: list[int] = []
    app = FastAPI(lifespan=clients.lifespan())

    @app.get("/")
    async def handler(client: Any = Depends(dep)) -> int:
        seen.append(id(client))
        return 0

    with TestClient(app) as c:
        for _ in range(5):
            c.get("/")
    assert len(set(seen)) == 1


def test_app_lifespan_composes_and_missing_lifespan_is_explained() -> None:
    """The app's own lifespan runs inside ours (its state reaches requests); no lifespan: a clear error."""
    clients = BalancedClients(startup_timeout=0)
    dep = clients.httpx("web.shop:http", source=StaticSource([]))
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"greeting": "hi"}
        events.append("stop")

    app = FastAPI(lifespan=clients.lifespan(own))

    @app.get("/")
    async def handler(request: Request, client: Any = Depends(dep)) -> str:
        return str(request.state.greeting)

    with TestClient(app) as c:
        assert c.get("/").json() == "hi"
    assert events == ["start", "stop"]

    bare = FastAPI()
    bare.get("/")(handler)
    with TestClient(bare) as c, pytest.raises(RuntimeError, match=r"lifespan=clients\.lifespan\(\)"):
        c.get("/")


def test_bad_options_are_refused() -> None:
    """A bad forward_affinity or startup_timeout is a ConfigurationError at declaration."""
    with pytest.raises(ConfigurationError, match="forward_affinity"):
        BalancedClients().httpx("web.shop:http", forward_affinity=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="startup_timeout"):
        BalancedClients(startup_timeout=-1)


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda c: c.httpx("web.shop:http", algorithm="round_robbin"), "unknown algorithm 'round_robbin'"),
        (lambda c: c.httpx("web.shop:http", retries=-1), "BalancedTransport retries=-1 is invalid"),
        (lambda c: c.httpx_cluster(algorithm="round_robbin"), "cluster algorithm='round_robbin' is invalid"),
        (lambda c: c.httpx_cluster(max_services=0), "cluster max_services=0 is invalid"),
        (lambda c: c.aiohttp("web.shop:http", algorithm="round_robbin"), "unknown algorithm 'round_robbin'"),
        (lambda c: c.aiohttp("web.shop:http", limt=10), "BalancedConnector has no option 'limt'"),
        (lambda c: c.aiohttp("web.shop:http", retry="x"), "BalancedConnector retry='x' is invalid"),
        (lambda c: c.aiohttp("web.shop:http", hedge=3), "BalancedConnector hedge=3 is invalid"),
        (
            lambda c: c.aiohttp_cluster(algorithm="round_robbin"),
            "cluster algorithm='round_robbin' is invalid",
        ),
        (lambda c: c.aiohttp_cluster(idle_timeout=0), "cluster idle_timeout=0 is invalid"),
        (lambda c: c.aiohttp_cluster(source=object()), "cluster source=<object"),
        # Each of these passed the declaration and failed the app's startup with a TypeError:
        (lambda c: c.httpx("web.shop:http", algoritm="x"), "BalancedTransport has no option 'algoritm'"),
        (lambda c: c.httpx_cluster(namspace="shop"), "BalancedTransport.cluster() has no option 'namspace'"),
        (
            lambda c: c.httpx("web.shop:http", client_options={"timout": 3}),
            "client_options has no option 'timout': httpx.AsyncClient takes",
        ),
        (
            lambda c: c.aiohttp("web.shop:http", client_options={"timout": 3}),
            "client_options has no option 'timout': aiohttp.ClientSession takes",
        ),
        (
            lambda c: c.aiohttp("web.shop:http", client_options={"connector": None}),
            "client_options cannot set 'connector'",
        ),
        (
            lambda c: c.httpx_cluster(client_options={"transport": None}),
            "client_options cannot set 'transport'",
        ),
        (lambda c: c.aiohttp("web.shop:http", client_options=[1]), "client_options must be a mapping"),
    ],
)
def test_bad_transport_options_are_refused_at_declaration(declare: Any, message: str) -> None:
    """A wrong BalancedTransport or BalancedConnector option is refused where the client is
    declared (at import), not when the app starts (it used to pass, and fail the app's startup;
    aiohttp's connector, which needs a running loop, is checked without being built)."""
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        declare(BalancedClients())


def test_good_aiohttp_options_are_accepted_at_declaration() -> None:
    """The declaration check lets through what BalancedConnector takes: its own options and
    aiohttp.TCPConnector's (by name), for one Service and in cluster mode; nothing is started."""
    clients = BalancedClients()
    clients.aiohttp(
        "web.shop:http", algorithm="ring_hash", retry=RetryPolicy(), limit=10, keepalive_timeout=3
    )
    clients.aiohttp_cluster(namespaces=["shop"], idle_timeout=60, limit_per_host=5, force_close=True)
    clients.aiohttp(
        "web.shop:http", client_options={"timeout": aiohttp.ClientTimeout(total=3), "raise_for_status": True}
    )
    clients.httpx("web.shop:http", client_options={"timeout": 3.0, "headers": {"X-A": "1"}})
    clients.httpx_cluster(namespaces=["shop"], http2=False, client_options={"follow_redirects": True})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def uvicorn_app(env: dict[str, str]) -> AsyncIterator[str]:
    """The test app under a real uvicorn server in a subprocess; yields its base URL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "fastapi_app:create_app",
        "--app-dir",
        str(HERE),
        "--port",
        str(port),
        "--log-level",
        "warning",
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(200):  # bounded: uvicorn starts within a few seconds
                with contextlib.suppress(httpx.TransportError):
                    if (await probe.get(f"{base}/debug/inflight")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("uvicorn did not start")
        yield base
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.slow
async def test_under_uvicorn_with_discovery_and_a_streaming_proxy(tmp_path: Path) -> None:
    """Under uvicorn, discovery through the fake apiserver reaches 3 pods; a streamed proxy response
    whose downstream caller disconnects mid-stream still puts its upstream pod back exactly once."""
    async with running_pods(3) as pods, FakeApiServer() as api:
        for pod in pods:
            api.apply(pod_slice(pod.name, pod.port))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        async with uvicorn_app({"KUBECONFIG": str(kubeconfig)}) as base, httpx.AsyncClient() as client:
            async with asyncio.timeout(30):
                seen = Counter([(await client.get(f"{base}/hello")).json()["pod"] for _ in range(30)])
                assert set(seen) == {"pod-0", "pod-1", "pod-2"}
                async with client.stream("GET", f"{base}/proxy/stream") as r:
                    first = await r.aiter_raw().__anext__()
                    assert first == b"first;"
                    assert (await client.get(f"{base}/debug/inflight")).json() == 1
                # The caller went away mid-stream (the pod still holds its response open).
                for _ in range(100):  # bounded: the server notices the disconnect within a few turns
                    if (await client.get(f"{base}/debug/inflight")).json() == 0:
                        break
                    await asyncio.sleep(0.05)
                assert (await client.get(f"{base}/debug/inflight")).json() == 0


def _aiohttp_app(clients: BalancedClients, dependency: Any) -> FastAPI:
    """An app whose /hello calls the Service once through the declared aiohttp client."""
    app = FastAPI(lifespan=clients.lifespan())

    @app.get("/hello")
    async def hello(session: Any = Depends(dependency)) -> Any:
        async with session.get("/") as r:
            return {"status": r.status, **(await r.json())}

    return app


def test_aiohttp_client_options_survive_a_second_start() -> None:
    """The caller's trace_configs are the session's at every start of the app (each TestClient
    block starts it again): the first start used to take them out of the declaration."""
    seen: list[str] = []

    async def on_start(session: Any, ctx: Any, params: Any) -> None:
        seen.append(params.url.host)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    with pods_in_thread(1) as pods:
        clients = BalancedClients(startup_timeout=5)
        web = clients.aiohttp(
            "web.shop:http", source=StaticSource([pods[0].key]), client_options={"trace_configs": [trace]}
        )
        app = _aiohttp_app(clients, web)
        for start in (1, 2):
            with TestClient(app) as client:
                assert client.get("/hello").json()["pod"] == "pod-0"
            assert seen == ["web.shop"] * start, start


@NEEDS_MIDDLEWARES
def test_aiohttp_declaration_retries_statuses_on_another_pod() -> None:
    """clients.aiohttp(..., retry=RetryPolicy(retry_statuses=True)): a 503 from one pod is sent
    again to the other (the session has BalancedMiddleware); it used to reach the handler, the
    policy having no effect without the middleware the declaration could not add."""
    with pods_in_thread(2) as pods:
        pods[0].status = 503
        clients = BalancedClients(startup_timeout=5)
        web = clients.aiohttp(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            retry=RetryPolicy(retry_statuses=True),
        )
        app = _aiohttp_app(clients, web)
        with TestClient(app) as client:
            answers = [client.get("/hello").json() for _ in range(6)]
            (balancer,) = app.state.kube_balance_clients[web].connector.balancers
            assert balancer.status().retries == pods[0].hits >= 1
        assert answers == [{"status": 200, "pod": "pod-1", "host": "web.shop", "cookie": None}] * 6


@NEEDS_MIDDLEWARES
def test_aiohttp_declaration_hedges() -> None:
    """clients.aiohttp(..., hedge=HedgePolicy(...)) hedges (docs/hedging.md said it could not):
    a request stuck on a pod that does not answer is answered by the other pod."""
    with pods_in_thread(2) as pods:
        pods[0].delay = 30.0  # answers after the test
        clients = BalancedClients(startup_timeout=5)
        web = clients.aiohttp(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            hedge=HedgePolicy(delay=0.05, budget_percent=1.0),
        )
        app = _aiohttp_app(clients, web)
        with TestClient(app) as client:
            assert [client.get("/hello").json()["pod"] for _ in range(2)] == ["pod-1", "pod-1"]
            (balancer,) = app.state.kube_balance_clients[web].connector.balancers
            assert balancer.status().hedges == pods[0].arrived >= 1
