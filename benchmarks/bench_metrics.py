"""Metrics: what they cost a request, and what a scrape costs.

    python benchmarks/bench_metrics.py [--quick] [--requests 20000] [--rounds 10]

1. **Transport with metrics on vs off** (target <= 1.02x client CPU per request). Two
   ``BalancedTransport`` clients, identical but for ``kube_balance.metrics.register()`` on one
   (histogram and all; ``per_endpoint=True`` is a third, opt-in, client). Their pods are an
   in-memory canned 200 (as bench_transport.py's "transport's own cost"), so the denominator is
   the smallest it can be: only httpx and the transport, no sockets. With real sockets a request
   costs some 1,000 us more, and the same added microsecond weighs less. Interleaved rounds in a
   rotating order; the figure is the median over rounds of each client's ratio to the metrics-off
   client of the same round, with the range.
2. **A scrape with 1,000 endpoints** (target <= 20 ms): ``generate_latest()`` of a registry holding
   one balancer over 1,000 endpoints, best of 21; the baseline, measured in the same run and
   interleaved, is a registry holding about the same number of samples in prometheus-client's own
   Histogram, Gauge and Counter objects (what the text exposition costs anyway). Also shown: the
   same with per-endpoint series for all 1,000 endpoints (2,000 more samples).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, table
from kube_balance import EndpointSet, LoadBalancer, metrics
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport

HOST = "web.shop.svc.cluster.local"


class _Canned(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok")


class _CannedBalanced(BalancedTransport):
    def _open_pool(self) -> Any:
        return _Canned()


def client(mode: str) -> httpx.AsyncClient:
    transport = _CannedBalanced("web.shop:80", source=StaticSource(["10.0.0.1:80", "10.0.0.2:80"]))
    if mode != "off":
        metrics.register(
            transport.balancer, registry=CollectorRegistry(), per_endpoint=mode == "per endpoint"
        )
    return httpx.AsyncClient(transport=transport)


async def transport_rounds(requests: int, rounds: int) -> dict[str, list[float]]:
    """Client CPU us per request, per round, for metrics off / on / on with per-endpoint series."""
    names = ["off", "on", "per endpoint"]
    clients = {n: client(n) for n in names}
    per_round: dict[str, list[float]] = {n: [] for n in names}
    for c in clients.values():  # warm up: start the balancers, fill the pools
        for _ in range(200):
            await c.get(f"http://{HOST}/")
    for r in range(rounds):
        order = names[r % 3 :] + names[: r % 3]
        for name in order:
            c = clients[name]
            started = time.process_time()
            for _ in range(requests):
                await c.get(f"http://{HOST}/")
            per_round[name].append((time.process_time() - started) / requests * 1e6)
    for c in clients.values():
        await c.aclose()
    return per_round


def observer_ns() -> tuple[float, float]:
    """ns per ``lb.put()`` without and with the metrics observers (best of 7, interleaved)."""
    lbs = []
    for registered in (False, True):
        lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), fallback="none")
        lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
        if registered:
            metrics.register(lb, registry=CollectorRegistry())
        lbs.append(lb)
    # algorithm.get(): LoadBalancer.get() would try to start its watcher outside an event loop
    timers = [timeit.Timer("lb.put(lb.algorithm.get(), 0.003)", globals={"lb": lb}) for lb in lbs]
    best = [float("inf"), float("inf")]
    for _ in range(7):
        for i, t in enumerate(timers):
            best[i] = min(best[i], t.timeit(100_000) / 100_000 * 1e9)
    return best[0], best[1]


def scrape_ms(registry: CollectorRegistry, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        generate_latest(registry)
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def baseline_registry(samples: int) -> CollectorRegistry:
    """About ``samples`` samples in prometheus-client's own objects: one labelled histogram (as
    ours) and labelled gauges and counters for the rest (what the exposition costs anyway)."""
    registry = CollectorRegistry()
    hist = Histogram("base_duration_seconds", "h", ["name"], registry=registry)
    hist.labels("web.shop:80").observe(0.01)
    rest = samples - sum(len(m.samples) for m in registry.collect())
    gauge = Gauge("base_gauge", "g", ["name", "i"], registry=registry)
    counter = Counter("base", "c", ["name", "i"], registry=registry)
    for i in range(max(0, rest) // 3):  # a counter exposes two samples (_total, _created)
        gauge.labels("web.shop:80", str(i)).set(i)
        counter.labels("web.shop:80", str(i)).inc()
    return registry


def scrape_figures(n: int) -> list[tuple[str, int, float, int, float]]:
    """(what, samples, best ms, baseline samples, baseline best ms) for our collector over ``n``
    endpoints, without and with per-endpoint series."""
    eps = [f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}:8080" for i in range(n)]
    out = []
    for per_endpoint in (False, True):
        lb = LoadBalancer("web.shop:80", source=StaticSource(eps), fallback="none")
        lb.on_endpoints(EndpointSet.of(eps))
        registry = CollectorRegistry()
        metrics.register(lb, registry=registry, per_endpoint=per_endpoint, endpoint_limit=n)
        samples = sum(len(m.samples) for m in registry.collect())
        baseline = baseline_registry(samples)
        base_samples = sum(len(m.samples) for m in baseline.collect())
        ours, base = float("inf"), float("inf")
        for _ in range(3):  # interleaved, best of each
            ours, base = min(ours, scrape_ms(registry, 7)), min(base, scrape_ms(baseline, 7))
        what = "per-endpoint series on" if per_endpoint else "default"
        out.append((what, samples, ours, base_samples, base))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke run")
    parser.add_argument("--requests", type=int, default=20_000, help="per client, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    requests, rounds = (1000, 1) if args.quick else (args.requests // args.rounds, args.rounds)

    per_round = asyncio.run(transport_rounds(requests, rounds))
    off = per_round["off"]
    rows = []
    for name, values in per_round.items():
        ratios = [v / o for v, o in zip(values, off, strict=True)]
        rows.append(
            (
                f"metrics {name}",
                f"{statistics.median(values):.1f}",
                f"{statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f})",
                "<= 1.02x" if name == "on" else "-",
            )
        )
    print(f"{machine()}; {requests * rounds} requests per client, median of {rounds} round(s), canned pods\n")
    print(table(["client", "CPU us/request", "ratio to metrics off (range)", "target"], rows))
    plain_ns, observed_ns = observer_ns()
    added_us = (observed_ns - plain_ns) / 1e3
    implied = (statistics.median(off) + added_us) / statistics.median(off)
    print(
        f"\nlb.get()+put(): {plain_ns:.0f} ns without metrics, {observed_ns:.0f} ns with (+{added_us * 1e3:.0f} ns "
        f"= the histogram observer); on {statistics.median(off):.1f} us per request that is {implied:.4f}x"
    )

    figures = scrape_figures(1000)
    print("\nScrape (generate_latest), one balancer over 1,000 endpoints, best of 21:\n")
    print(
        table(
            ["kube-balance collector", "samples", "ms", "baseline samples", "baseline ms", "ratio", "target"],
            [
                (what, n, f"{ms:.2f}", bn, f"{bms:.2f}", f"{ms / bms:.2f}x", "<= 20 ms" if i == 0 else "-")
                for i, (what, n, ms, bn, bms) in enumerate(figures)
            ],
        )
    )


if __name__ == "__main__":
    main()
