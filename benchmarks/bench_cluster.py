"""Cluster mode's cost per request: ``.cluster()`` clients vs clients built for the named Service.

    python benchmarks/bench_cluster.py [--quick] [--requests 3000] [--concurrency 50] [--rounds 6]

Both kinds of client balance the same Service (``web.shop``, 2 pods in a separate process, its
EndpointSlices on the fake apiserver, watched by the real Kubernetes client), for httpx and for
aiohttp. The named client finds its route with one dictionary lookup on the host; the cluster
client also looks up the Service and port, stamps the time for the idle sweep and checks that the
Service has an eligible endpoint. Figures: requests/s and client CPU per request (``process_time``:
the pods run in another process), as the median over interleaved rounds of each cluster client's
ratio to the named client *of the same round*; and the route lookup alone, in microseconds (best
of 5 x 20,000 calls). Target: cluster >= 0.95x named requests/s (the lookup is a few
microseconds against ~100 us of HTTP client per request).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import aiohttp_get, drive, httpx_get, machine, table
from bench_transport import free_ports, serve
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, endpoint_slice, service, slice_endpoint

URL = "http://web.shop/"


async def lookup_us(routes: Any, number: int = 20_000, repeat: int = 5) -> float:
    """Best-of-``repeat`` microseconds per route lookup of ``web.shop`` port 80."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        if routes.static:
            for _ in range(number):
                routes.get("web.shop")
        else:
            for _ in range(number):
                await routes.resolve("web.shop", None, "http")
        best = min(best, time.perf_counter() - start)
    return best / number * 1e6


async def run(ports: list[int], requests: int, concurrency: int, rounds: int) -> None:
    async with FakeApiServer() as api:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for i, port in enumerate(ports):
            api.apply(
                endpoint_slice(
                    "web",
                    "shop",
                    name=f"web-{i}",
                    endpoints=[slice_endpoint("127.0.0.1")],
                    ports=[{"name": "http", "port": port}],
                )
            )
        kube = await api.new_api_client()
        try:
            named_t = BalancedTransport(
                "web.shop:http", source=KubernetesSource("web.shop:http", api_client=kube)
            )
            cluster_t = BalancedTransport.cluster(api_client=kube, namespace="shop")
            named_c = BalancedConnector(
                "web.shop:http", source=KubernetesSource("web.shop:http", api_client=kube)
            )
            cluster_c = BalancedConnector.cluster(api_client=kube, namespace="shop")
            clients: dict[str, Any] = {
                "httpx named": httpx.AsyncClient(transport=named_t),
                "httpx cluster": httpx.AsyncClient(transport=cluster_t),
                "aiohttp named": aiohttp.ClientSession(connector=named_c),
                "aiohttp cluster": aiohttp.ClientSession(connector=cluster_c),
            }
            fetches = {
                name: (httpx_get if name.startswith("httpx") else aiohttp_get)(client, URL)
                for name, client in clients.items()
            }

            async def once(name: str, n: int) -> tuple[float, float]:
                wall, cpu = time.perf_counter(), time.process_time()
                await drive(fetches[name], n, concurrency)
                return n / (time.perf_counter() - wall), (time.process_time() - cpu) / n * 1e6

            for name in clients:  # settle: watches started, pools warm
                await once(name, min(requests, 1000))
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
            names = list(clients)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    results[name].append(await once(name, requests))

            rows = []
            for lib in ("httpx", "aiohttp"):
                named, cluster = results[f"{lib} named"], results[f"{lib} cluster"]
                rps = [c[0] / n[0] for n, c in zip(named, cluster, strict=True)]
                cpu = [c[1] / n[1] for n, c in zip(named, cluster, strict=True)]
                rows.append(
                    [
                        lib,
                        f"{statistics.median(x[0] for x in named):,.0f}",
                        f"{statistics.median(x[0] for x in cluster):,.0f}",
                        f"{statistics.median(rps):.3f}x ({min(rps):.2f}-{max(rps):.2f})",
                        f"{statistics.median(cpu):.3f}x",
                    ]
                )
            print(
                table(["client", "named req/s", "cluster req/s", "cluster/named req/s", "CPU/request"], rows)
            )
            lookups = [
                [
                    "httpx",
                    f"{await lookup_us(named_t._routes):.3f}",
                    f"{await lookup_us(cluster_t._routes):.3f}",
                ],
                [
                    "aiohttp",
                    f"{await lookup_us(named_c._routes):.3f}",
                    f"{await lookup_us(cluster_c._routes):.3f}",
                ],
            ]
            print()
            print(table(["route lookup", "named us", "cluster us"], lookups))
            for client in clients.values():
                if isinstance(client, httpx.AsyncClient):
                    await client.aclose()
                else:
                    await client.close()
        finally:
            await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 500 requests (smoke run)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 500, 1
    print(machine())
    ports = free_ports(2)
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=serve, args=(ports, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("pods did not start")
        asyncio.run(run(ports, args.requests, args.concurrency, args.rounds))
    finally:
        stop.set()
        proc.join(10)


if __name__ == "__main__":
    main()
