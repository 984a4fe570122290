"""HTTP/2 across 10 pods: an L4 proxy standing in for a ClusterIP vs ``BalancedTransport(http2=True)``.

    python benchmarks/bench_http2_spread.py [--quick] [--requests 2000] [--concurrency 50]

Why client-side balancing matters for HTTP/2: a ClusterIP (kube-proxy) picks a pod per TCP
connection, and an HTTP/2 client multiplexes every request over one connection, so one pod gets
everything. Ten pods (:class:`kube_balance.testing.PodFleet` with ``http2=True``: hypercorn, h2c
with prior knowledge, answering after 15-25 ms, all in one child process) and three clients,
each sending ``--requests`` GETs from ``--concurrency`` tasks:

- **L4 proxy, HTTP/2**: ``httpx.AsyncClient(http1=False, http2=True)`` to the fleet's
  :class:`~kube_balance.testing.L4Proxy` (a TCP proxy choosing a pod round robin per connection,
  as kube-proxy does);
- **L4 proxy, HTTP/1.1** (for context): the same proxy with httpx's HTTP/1.1 keep-alive pool, which
  opens up to ``--concurrency`` connections and so spreads them per connection;
- **BalancedTransport, HTTP/2**: ``BalancedTransport("web.shop:http", http1=False, http2=True)``
  (least_request, the default), endpoints from the real ``kubernetes_asyncio`` client watching
  :class:`~kube_balance.testing.FakeApiServer`: one HTTP/2 connection per pod, a pod per request.

Requests per pod are read from each response (the pod names itself), checked against the pods'
own counters, and every response's HTTP version is checked to be 2 for the HTTP/2 clients.
Target: BalancedTransport's busiest pod / least busy pod <= 1.2. Writes
``results/http2_spread.png`` (requests per pod, per client). ``--quick``: 500 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, table
from _plot import pyplot, save
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, PodFleet

PODS = 10
TARGET = 1.2  # BalancedTransport's max/min requests per pod
CLIENTS = ["L4 proxy, HTTP/2", "L4 proxy, HTTP/1.1", "BalancedTransport, HTTP/2"]


async def drive(
    client: httpx.AsyncClient, url: str, requests: int, concurrency: int, http2: bool
) -> list[str]:
    """``requests`` GETs from ``concurrency`` tasks; the pod that answered each."""
    pods: list[str] = []
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await client.get(url)
            response.raise_for_status()
            if http2 and response.http_version != "HTTP/2":
                raise RuntimeError(f"expected HTTP/2, got {response.http_version}")
            pods.append(response.json()["pod"])

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 300)
    return pods


async def measure(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    """client -> requests per pod (every pod listed, 0 included)."""
    out = {}
    async with FakeApiServer() as api, PodFleet(PODS, http2=True, seed=2) as fleet:
        fleet.publish(api, "web", "shop")
        kubeconfig = api.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", namespace="shop")
        proxy = f"http://127.0.0.1:{await fleet.l4_proxy()}/"
        source = KubernetesSource("web.shop:http", kubeconfig=kubeconfig)
        balanced = BalancedTransport("web.shop:http", source=source, http1=False, http2=True)
        clients = {
            CLIENTS[0]: (httpx.AsyncClient(http1=False, http2=True), proxy, True),
            CLIENTS[1]: (httpx.AsyncClient(), proxy, False),
            CLIENTS[2]: (httpx.AsyncClient(transport=balanced), "http://web.shop/", True),
        }
        await balanced.balancer.wait_ready(20)
        for name, (client, url, http2) in clients.items():
            async with client:
                await fleet.reset_hits()
                answered = await drive(client, url, args.requests, args.concurrency, http2)
                hits = await fleet.hits()
            counts = collections.Counter(answered)
            if dict(counts) != {pod: n for pod, n in hits.items() if n}:
                raise RuntimeError(f"{name}: the pods counted {hits}, the responses said {dict(counts)}")
            out[name] = {pod.name: counts[pod.name] for pod in fleet.pods}
            print(f"  {name:<26} " + " ".join(f"{n:>4}" for n in out[name].values()), flush=True)
    return out


def spread(per_pod: dict[str, int]) -> str:
    low, high = min(per_pod.values()), max(per_pod.values())
    return "inf (a pod got none)" if low == 0 else f"{high / low:.2f}"


def plot(results: dict[str, dict[str, int]], title: str, quick: bool) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4), layout="constrained")
    pods = list(next(iter(results.values())))
    width = 0.8 / len(results)
    for k, (name, per_pod) in enumerate(results.items()):
        xs = [i + (k - (len(results) - 1) / 2) * width for i in range(len(pods))]
        ax.bar(xs, list(per_pod.values()), width, label=f"{name} (max/min {spread(per_pod)})")
    total = sum(next(iter(results.values())).values())
    ax.axhline(total / len(pods), color="black", linewidth=0.8, linestyle="--", label="even share")
    ax.set_xticks(range(len(pods)), pods, fontsize=8)
    ax.set_ylabel("requests")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    save(fig, "http2_spread", quick)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 requests per client")
    parser.add_argument("--requests", type=int, default=2000, help="per client")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.requests = 500
    results = asyncio.run(measure(args))
    setting = f"{PODS} h2c pods, {args.requests} requests per client, {args.concurrency} concurrent"
    print(f"\n{machine()}; {setting}")
    rows = []
    for name, per_pod in results.items():
        busiest = max(per_pod.values())
        rows.append([name, *per_pod.values(), f"{busiest / args.requests:.0%}", spread(per_pod)])
    pods = list(next(iter(results.values())))
    print(table(["client", *pods, "busiest pod's share", "max/min"], rows))
    ours = results[CLIENTS[2]]
    ratio = max(ours.values()) / min(ours.values()) if min(ours.values()) else float("inf")
    print(
        f"\nBalancedTransport, HTTP/2: max/min {ratio:.2f}; target <= {TARGET}: "
        f"{'met' if ratio <= TARGET else 'MISSED'}"
    )
    plot(results, f"Requests per pod over HTTP/2 ({setting})", args.quick)


if __name__ == "__main__":
    main()
