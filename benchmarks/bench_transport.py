"""Requests/s and client CPU per request: BalancedTransport vs a plain httpx client, same run.

    python benchmarks/bench_transport.py [--quick] [--requests 5000] [--concurrency 50] [--rounds 5]

The pods are aiohttp servers on 127.0.0.1 in a separate process (one event loop serving 4
ports), so the client process's CPU time is the client's alone. Each client sends ``--requests``
in total, split into ``--rounds`` rounds; a round runs the three clients back to back in a
rotating order, and the median over rounds of each ratio to the plain client of the same round
is reported (a burst of load from another process hits one round, not the result):

- plain: ``httpx.AsyncClient()`` to one server port (one pool, up to 50 connections);
- balanced x4: ``BalancedTransport`` over the 4 ports (least_request, a pool per endpoint);
- balanced x1: ``BalancedTransport`` over 1 endpoint (the transport's own overhead).

Targets (issue 5): balanced x4 >= 1.1x plain, balanced x1 >= 0.95x plain.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, table
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport

HOST = "web.shop.svc.cluster.local"
TARGETS = {"balanced x4": 1.10, "balanced x1": 0.95}


def serve(
    ports: list[int], ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event
) -> None:
    """The pods: one aiohttp app on several ports in this (child) process."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await runner.cleanup()

    asyncio.run(main())


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def load(client: httpx.AsyncClient, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(requests/s, client CPU microseconds per request) for ``requests`` GETs, ``concurrency`` at a time."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            r = await client.get(url)
            if r.status_code != 200:
                raise RuntimeError(f"status {r.status_code}")

    for _ in range(concurrency):  # warm up the connections first
        await client.get(url)
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return requests / wall, cpu / requests * 1e6


async def one_round(
    ports: list[int], requests: int, concurrency: int, order: list[str]
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for name in order:
        if name == "plain":
            client = httpx.AsyncClient()
            url = f"http://127.0.0.1:{ports[0]}/"
        else:
            keys = [f"127.0.0.1:{p}" for p in (ports if name == "balanced x4" else ports[:1])]
            client = httpx.AsyncClient(transport=BalancedTransport("web.shop:80", source=StaticSource(keys)))
            url = f"http://{HOST}/"
        async with client:
            out[name] = await load(client, url, requests, concurrency)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 500 requests")
    parser.add_argument("--requests", type=int, default=5000, help="per client, over all rounds")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    requests, rounds = (500, 1) if args.quick else (args.requests // args.rounds, args.rounds)

    ports = free_ports(4)
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    server = ctx.Process(target=serve, args=(ports, ready, stop), daemon=True)
    server.start()
    try:
        if not ready.wait(20):
            raise SystemExit("the pod server did not start")
        names = ["plain", "balanced x4", "balanced x1"]
        results: list[dict[str, tuple[float, float]]] = []
        for i in range(rounds):
            order = names[i % 3 :] + names[: i % 3]  # rotate so no client always runs first
            results.append(asyncio.run(one_round(ports, requests, args.concurrency, order)))
    finally:
        stop.set()
        server.join(10)

    rows = []
    for name in names:
        rps = statistics.median(r[name][0] for r in results)
        cpu = statistics.median(r[name][1] for r in results)
        ratio = statistics.median(r[name][0] / r["plain"][0] for r in results)
        cpu_ratio = statistics.median(r[name][1] / r["plain"][1] for r in results)
        target = f">= {TARGETS[name]:.2f}x" if name in TARGETS else "baseline"
        ok = "" if name not in TARGETS else (" ok" if ratio >= TARGETS[name] else " MISSED")
        rows.append([name, f"{rps:,.0f}", f"{ratio:.2f}x", target + ok, f"{cpu:.0f}", f"{cpu_ratio:.2f}x"])
    print(
        f"{machine()}; {requests * rounds} requests per client, {args.concurrency} concurrent, median of {rounds} round(s)"
    )
    print(table(["client", "requests/s", "vs plain", "target", "client CPU us/req", "CPU vs plain"], rows))


if __name__ == "__main__":
    main()
