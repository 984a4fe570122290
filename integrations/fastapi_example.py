"""kube-balance in a FastAPI service that calls another Service, with affinity forwarded.

    python integrations/fastapi_example.py          # the whole thing on one machine
    uvicorn fastapi_example:app --port 8000          # in a pod (run from this directory)

``app`` below is the service as you would deploy it: ``GET /profile`` calls the Service
``web.shop`` through a balanced httpx client, and copies the caller's ``X-User`` header into the
outgoing affinity header, so ``ring_hash`` sends each user to one pod of ``web.shop`` (its caches
stay warm) while different users spread over the pods. ``load_factor=1.25`` bounds how far a hot
user can overload a pod. Nothing here names the fake cluster: in a pod the library reads the
in-cluster config; ``main()`` sets ``KUBECONFIG`` to the fake apiserver's kubeconfig instead,
serves the app with uvicorn on 127.0.0.1 and calls it as three users would.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from contextlib import AsyncExitStack
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import Depends, FastAPI

from kube_balance.integrations.fastapi import BalancedClients

clients = BalancedClients(startup_timeout=5)
web = clients.httpx(
    "web.shop:http",
    algorithm="ring_hash",
    algorithm_options={"load_factor": 1.25},
    forward_affinity="X-User",
)
app = FastAPI(lifespan=clients.lifespan())


@app.get("/profile")
async def profile(client: Annotated[httpx.AsyncClient, Depends(web)]) -> dict[str, Any]:
    reply = await client.get("/profile")  # base URL http://web.shop; X-Affinity: the caller's X-User
    reply.raise_for_status()
    return {"served_by": reply.json()}


async def main() -> None:
    from local_cluster import local_cluster, until

    async with AsyncExitStack() as stack, asyncio.timeout(60):
        cluster = await local_cluster(stack, pods=3)
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)  # in a pod: the in-cluster config

        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        stack.push_async_callback(asyncio.wait_for, serving, 10)
        stack.callback(setattr, server, "should_exit", True)
        await until(lambda: server.started or serving.done(), 20)
        port = server.servers[0].sockets[0].getsockname()[1]

        pods_by_user: dict[str, set[str]] = defaultdict(set)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as caller:
            for _ in range(20):
                for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
                    reply = (await caller.get("/profile", headers={"X-User": user})).json()
                    assert reply["served_by"]["affinity"] == user  # forwarded as X-Affinity
                    pods_by_user[user].add(reply["served_by"]["pod"])
        for user, pods in pods_by_user.items():
            print(f"{user:<8} -> {', '.join(sorted(pods))}")
        print(f"pods used: {len(set().union(*pods_by_user.values()))}")


if __name__ == "__main__":
    asyncio.run(main())
