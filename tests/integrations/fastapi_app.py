"""A FastAPI service calling another Service through kube-balance, for the FastAPI tests.

Configured from the environment so it runs the same under ``TestClient`` and under uvicorn in a
subprocess: ``PODS`` (comma-separated ``host:port``, a static source) or ``KUBECONFIG`` (the fake
apiserver: real discovery), ``ALGORITHM``, ``CLIENT_KIND`` (httpx or aiohttp) and ``CLUSTER``
(set: a cluster-mode client, calling ``http://web.shop/...`` by its URL).
"""

import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse

from kube_balance.discovery import StaticSource
from kube_balance.integrations.fastapi import BalancedClients


def create_app() -> FastAPI:
    """The app: /hello calls web.shop once; /proxy/stream streams web.shop's /stream back."""
    pods = os.environ.get("PODS")
    options: dict[str, Any] = {"algorithm": os.environ.get("ALGORITHM", "least_request")}
    if pods:
        options["source"] = StaticSource(pods.split(","))
    if options["algorithm"] in ("ring_hash", "maglev"):
        options["algorithm_options"] = {"missing_key": "random"}
    clients = BalancedClients(startup_timeout=5)
    kind = os.environ.get("CLIENT_KIND", "httpx")
    cluster = bool(os.environ.get("CLUSTER"))
    base = "http://web.shop" if cluster else ""
    if cluster:
        web = clients.httpx_cluster(namespace="shop", forward_affinity="X-User", **options)
    elif kind == "aiohttp":
        web = clients.aiohttp("web.shop:http", forward_affinity="X-User", **options)
    else:
        web = clients.httpx("web.shop:http", forward_affinity="X-User", **options)
    app = FastAPI(lifespan=clients.lifespan())
    Client = Annotated[Any, Depends(web)]

    @app.get("/hello")
    async def hello(client: Client) -> Any:
        if kind == "aiohttp":
            async with client.get(f"{base}/") as r:
                return await r.json()
        return (await client.get(f"{base}/")).json()

    @app.get("/proxy/stream")
    async def proxy_stream(client: Client) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            async with client.stream("GET", f"{base}/stream") as upstream:
                async for chunk in upstream.aiter_raw():
                    yield chunk

        return StreamingResponse(body())

    @app.get("/debug/inflight")
    async def inflight(client: Client) -> int:
        transport = client._transport  # every balancer: a cluster client has one per Service in use
        return sum(int(b.algorithm.total_inflight()) for b in transport.balancers)

    return app
