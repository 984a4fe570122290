"""`kube-balance proxy`: requests/s and added latency against the same client straight to one pod.

    python benchmarks/bench_proxy.py [--quick] [--requests 2000] [--rounds 5] [--concurrency 50]

One pod (an aiohttp "ok" server in a process of its own), the proxy as a real subprocess
(``python -m kube_balance proxy``, least_request over that one pod, found through the fake API
server running in this process), and one aiohttp client with keep-alive, here. Each round runs,
in alternating order, ``--requests`` sequential requests straight to the pod and through the proxy
(latency: p50 and p99 of each, and the difference, "added"), then the same number at
``--concurrency`` concurrent tasks (requests/s). Figures are medians over rounds. Target (issue
11): p50 added <= 1 ms on loopback. The proxy's own CPU per request (its /proc counters over the
sequential run) is printed too: it is what the proxy adds on an idle machine; on a busy one the
added latency also holds the time the proxy process waits for a core, twice per request.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _harness import aiohttp_get, drive, machine, table
from bench_transport import cpu_seconds, free_ports, serve
from kube_balance.testing import FakeApiServer, endpoint_slice, service, slice_endpoint

SRC = str(Path(__file__).resolve().parents[1] / "src")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sequential(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
        out.append((time.perf_counter() - started) * 1e3)
    return out


async def concurrent(session: aiohttp.ClientSession, url: str, n: int, concurrency: int) -> float:
    """Requests/s of ``n`` GETs from ``concurrency`` tasks."""
    started = time.perf_counter()
    await drive(aiohttp_get(session, url), n, concurrency)
    return n / (time.perf_counter() - started)


async def run(args: argparse.Namespace, pod_port: int) -> dict[str, dict[str, list[float]]]:
    async with FakeApiServer() as api:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        api.apply(
            endpoint_slice(
                "web", "shop", name="web-0", endpoints=[slice_endpoint("127.0.0.1")],
                ports=[{"name": "http", "port": pod_port}],
            )
        )  # fmt: skip
        kubeconfig = api.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", namespace="shop")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kube_balance", "proxy", "web.shop:http", "--listen", "127.0.0.1:0",
            "--kubeconfig", str(kubeconfig), stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": SRC},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            urls = {
                "direct": f"http://127.0.0.1:{pod_port}/",
                "proxy": line.strip().rsplit(" on ", 1)[1] + "/",
            }
            figures: dict[str, dict[str, list[float]]] = {
                k: {"p50": [], "p99": [], "rps": [], "cpu": []} for k in urls
            }
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:
                for _ in range(100):  # the proxy answers once its watch synced
                    async with session.get(urls["proxy"]) as r:
                        if r.status == 200:
                            break
                    await asyncio.sleep(0.1)
                for name in urls:  # warm up both paths
                    await sequential(session, urls[name], 200)
                for i in range(args.rounds):
                    for name in ["direct", "proxy"] if i % 2 == 0 else ["proxy", "direct"]:
                        before = cpu_seconds([proc.pid])
                        times = await sequential(session, urls[name], args.requests)
                        after = cpu_seconds([proc.pid])
                        if before is not None and after is not None:
                            figures[name]["cpu"].append((after - before) / args.requests * 1e6)
                        figures[name]["p50"].append(pct(times, 0.5))
                        figures[name]["p99"].append(pct(times, 0.99))
                        figures[name]["rps"].append(
                            await concurrent(session, urls[name], args.requests, args.concurrency)
                        )
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 40)
    return figures


async def in_process(requests: int, rounds: int) -> tuple[float, float]:
    """(direct p50, proxied p50) in ms with pod, proxy and client in this one event loop.

    No process waits for a core between hops here, so the difference is the proxy's own work:
    what it adds on an idle machine (on this one, CPU-bound, it is also slowed by the load).
    """
    from aiohttp import web

    from kube_balance import LoadBalancer
    from kube_balance.cli._proxy import Proxy, _Connector
    from kube_balance.discovery.static import StaticSource

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    pod_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    lb = LoadBalancer("web.shop:http", source=StaticSource([f"127.0.0.1:{pod_port}"]), fallback="none")
    p50s: dict[str, list[float]] = {"direct": [], "proxy": []}
    async with lb:
        session = aiohttp.ClientSession(connector=_Connector(lb), auto_decompress=False)
        proxy = Proxy(lb, session, argparse.Namespace(affinity_header="X-Affinity", timeout=60.0))
        server = await asyncio.get_running_loop().create_server(
            web.Server(proxy.handle, access_log=None), "127.0.0.1", 0
        )
        urls = {
            "direct": f"http://127.0.0.1:{pod_port}/",
            "proxy": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/",
        }
        async with aiohttp.ClientSession() as client:
            for name in urls:
                await sequential(client, urls[name], 100)
            for i in range(rounds):
                for name in ["direct", "proxy"] if i % 2 == 0 else ["proxy", "direct"]:
                    p50s[name].append(pct(await sequential(client, urls[name], requests), 0.5))
        server.close()
        await session.close()
    await runner.cleanup()
    return statistics.median(p50s["direct"]), statistics.median(p50s["proxy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 300 requests: a smoke run")
    parser.add_argument("--requests", type=int, default=2000, help="per path and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 1
    port = free_ports(1)[0]
    ctx = multiprocessing.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    pod = ctx.Process(target=serve, args=([port], ready, stop), daemon=True)
    pod.start()
    if not ready.wait(20):
        raise SystemExit("the pod did not start")
    try:
        figures = asyncio.run(run(args, port))
    finally:
        stop.set()
        pod.join(10)
    med = {
        k: {m: statistics.median(v) if v else float("nan") for m, v in d.items()} for k, d in figures.items()
    }
    print(
        f"{machine()}; {args.requests} requests per path and round, {args.rounds} round(s), "
        f"{args.concurrency} concurrent for requests/s; medians over rounds\n"
    )
    rows = [(name, f"{m['p50']:.3f}", f"{m['p99']:.3f}", f"{m['rps']:.0f}") for name, m in med.items()]
    added50 = med["proxy"]["p50"] - med["direct"]["p50"]
    added99 = med["proxy"]["p99"] - med["direct"]["p99"]
    rows.append(("added by the proxy", f"{added50:+.3f}", f"{added99:+.3f}",
                 f"{med['proxy']['rps'] / med['direct']['rps']:.2f}x"))  # fmt: skip
    print(table(["path", "p50 ms", "p99 ms", "requests/s"], rows))
    print(f"\ntarget: p50 added <= 1 ms: {'met' if added50 <= 1.0 else 'NOT met'} ({added50:.3f} ms)")
    direct50, proxy50 = asyncio.run(in_process(args.requests, args.rounds))
    print(
        f"in one process (pod, proxy and client on one event loop, no waiting for a core): p50 "
        f"{direct50:.3f} ms direct, {proxy50:.3f} ms proxied, added {proxy50 - direct50:+.3f} ms"
    )
    print(
        f"the proxy's own CPU per proxied request (sequential, /proc): {med['proxy']['cpu']:.0f} us; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (each hop through a 3rd "
        "process waits for a core when the machine is busy)"
    )


if __name__ == "__main__":
    main()
