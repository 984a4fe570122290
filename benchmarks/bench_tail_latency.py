"""Tail latency per algorithm with a slow pod: Linkerd's "Beyond Round Robin" scenario, scaled down 10x.

    python benchmarks/bench_tail_latency.py [--quick] [--requests 5000] [--periods 3]
        [--concurrency 8] [--algorithms round_robin,peak_ewma,...]

Linkerd's experiment (2016): a pool of servers answering in about 150-250 ms, one of them 10x
slower; here, 10x faster: 12 pods answering after a delay drawn uniformly from 15-25 ms, and

- **healthy**: every pod at that speed;
- **slow**: pod-11 answers 10x slower (150-250 ms), all the run;
- **flapping**: pod-11 is 10x slower for the first 2 s of every 10 s from the start of the timed
  window, normal otherwise; the run lasts whole periods: at least ``--periods`` (default 3: 30 s)
  and at least ``--requests`` requests.

The pods are :class:`kube_balance.testing.PodFleet` (aiohttp servers, HTTP/1.1, all in one child
process, so the client has its core to itself). The client is a ``BalancedTransport`` (httpx)
whose endpoints come from the real ``kubernetes_asyncio`` client watching
:class:`kube_balance.testing.FakeApiServer` (``KubernetesSource`` with the fake's kubeconfig): the
whole path a pod in a cluster uses, over loopback.

Load: a closed loop of ``--concurrency`` tasks (default 8), each sending its next GET as soon as
the last one answers, so about 400 requests/s while every pod is healthy; each run is preceded by
1 s of untimed traffic (connections open, estimates warm), then times ``--requests`` requests
(default 5,000; ``slow`` and ``healthy``) or whole flap periods (``flapping``: 3 periods, about
12,000 requests on a quiet machine; more periods where the machine is too slow for 5,000 in 3). Latency is ``client.get()``'s wall time, from the call to the read body. A new
transport (fresh algorithm state) per run; runs go algorithm by algorithm, its three scenarios
back to back, so each algorithm's healthy baseline is measured next to its slow runs. Before
each timed window the heap is frozen (``_harness.freeze_heap``: ``gc.collect()`` then
``gc.freeze()``): this process also runs the fake API server, and a full collection of its
objects stopped the client for 65-99 ms, the whole p99.9 of a run; it stops no pod.

Algorithms: round_robin, random, least_request, peak_ewma (their defaults: peak_ewma decays over
10 s, unmeasured pods start at 30 ms) and ring_hash, plain and with bounded loads (load factor
1.25), keyed by a random user id out of 10,000 per request (``X-Affinity``).

Targets (the issue's): with the slow pod, peak_ewma's p99 <= 1.2x its healthy p99 and <= 0.2x
round_robin's p99; with the flapping pod, the same on p99.9. Writes ``results/tail_latency.png``
(percentile bars per algorithm and scenario; the latency distributions' tails). ``--quick``:
1,000 requests and one flap period per run (a smoke run: too few requests for a p99.9).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import freeze_heap, machine, table
from _plot import pyplot, save
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, PodFleet

PODS = 12
SLOW_POD = f"pod-{PODS - 1}"
LATENCY = (0.015, 0.025)  # seconds, uniform: Linkerd's 150-250 ms scaled down 10x
FACTOR = 10.0
FLAP_ON, FLAP_PERIOD = 2.0, 10.0
WARMUP = 1.0  # seconds of untimed traffic before each run
SCENARIOS = ("healthy", "slow", "flapping")
ALGORITHMS: dict[str, tuple[str, dict[str, float]]] = {  # label -> (algorithm, options)
    "round_robin": ("round_robin", {}),
    "random": ("random", {}),
    "least_request": ("least_request", {}),
    "peak_ewma": ("peak_ewma", {}),
    "ring_hash": ("ring_hash", {}),
    "ring_hash bounded": ("ring_hash", {"load_factor": 1.25}),
}
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
TARGET = {"slow": 99.0, "flapping": 99.9}  # the percentile each scenario's targets are on
TARGET_VS_HEALTHY, TARGET_VS_ROUND_ROBIN = 1.2, 0.2


@dataclass
class Run:
    """One algorithm in one scenario: every request's latency (seconds) and the slow pod's share."""

    algorithm: str
    scenario: str
    latencies: list[float]
    wall: float
    cpu: float
    slow_share: float
    lags: list[float]  # the client's event-loop lag, sampled every 10 ms during the window

    def percentile(self, p: float) -> float:
        """Latency percentile ``p`` (nearest rank), in seconds."""
        return percentile(self.latencies, p)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank; NaN for no values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


async def drive(
    client: httpx.AsyncClient, concurrency: int, stop: Callable[[int], bool], seed: int
) -> list[float]:
    """GETs from ``concurrency`` tasks until ``stop(requests started so far)``; their latencies."""
    latencies: list[float] = []
    rng = random.Random(seed)
    clock = time.perf_counter
    started = 0

    async def worker() -> None:
        nonlocal started
        while not stop(started):
            started += 1
            headers = {"X-Affinity": f"user-{rng.randrange(10_000)}"}
            begin = clock()
            response = await client.get("http://web.shop/", headers=headers)
            latencies.append(clock() - begin)
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 1200)
    return latencies


def whole_periods(start: float, periods: int, requests: int) -> Callable[[int], bool]:
    """Stop at the end of the first flap period by which both ``periods`` and ``requests`` are reached."""
    reached: float | None = None

    def stop(started: int) -> bool:
        nonlocal reached
        now = time.perf_counter()
        if reached is None and started >= requests:
            reached = now
        if reached is None:
            return False
        end = start + max(periods, math.ceil((reached - start) / FLAP_PERIOD)) * FLAP_PERIOD
        return now >= end

    return stop


async def run_one(
    fleet: PodFleet, kubeconfig: Path, label: str, scenario: str, args: argparse.Namespace, seed: int
) -> Run:
    """A fresh transport, 1 s untimed, then the timed window of ``scenario``."""
    algorithm, options = ALGORITHMS[label]
    await fleet.configure(SLOW_POD, slow_factor=FACTOR if scenario == "slow" else 1.0, flap=None)
    source = KubernetesSource("web.shop:http", kubeconfig=kubeconfig)
    transport = BalancedTransport(
        "web.shop:http", algorithm=algorithm, algorithm_options=options, source=source
    )
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        await transport.balancer.wait_ready(20)
        async with asyncio.timeout(20):
            while len(transport.balancer.eligible) < PODS:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        warm_until = time.perf_counter() + WARMUP
        await drive(client, args.concurrency, lambda _: time.perf_counter() >= warm_until, seed)
        if scenario == "flapping":  # slow for the first 2 s of each period, from now on
            await fleet.configure(SLOW_POD, flap=(FACTOR, FLAP_ON, FLAP_PERIOD))
        await fleet.reset_hits()
        freeze_heap()  # no full collection of the setup's objects inside the timed window
        lags: list[float] = []
        probe = asyncio.create_task(loop_lag(lags))
        wall, cpu = time.perf_counter(), time.process_time()
        if scenario == "flapping":
            stop = whole_periods(wall, args.periods, args.requests)
        else:
            stop = lambda started: started >= args.requests  # noqa: E731
        latencies = await drive(client, args.concurrency, stop, seed + 1)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        probe.cancel()
        hits = await fleet.hits()
    share = hits.get(SLOW_POD, 0) / max(sum(hits.values()), 1)
    return Run(label, scenario, latencies, wall, cpu, share, lags)


async def loop_lag(lags: list[float], interval: float = 0.01) -> None:
    """How late the client's event loop wakes a 10 ms sleep: the machine's share of the latency.

    On a loaded machine the client (or the pods' process) waits for a core; that wait lands on
    every request in flight, whatever the algorithm, and shows here.
    """
    clock = time.perf_counter
    while True:
        started = clock()
        await asyncio.sleep(interval)
        lags.append(clock() - started - interval)


async def measure(args: argparse.Namespace) -> list[Run]:
    runs = []
    async with FakeApiServer() as api, PodFleet(PODS, latency=LATENCY, seed=1) as fleet:
        fleet.publish(api, "web", "shop")
        kubeconfig = api.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig", namespace="shop")
        for i, label in enumerate(args.algorithms):
            for j, scenario in enumerate(SCENARIOS):
                run = await run_one(fleet, kubeconfig, label, scenario, args, seed=100 * i + 10 * j)
                print(
                    f"  {label:<18} {scenario:<9} {len(run.latencies):>6} requests in {run.wall:5.1f} s: "
                    + "  ".join(f"p{p:g} {run.percentile(p) * 1e3:6.1f} ms" for p in PERCENTILES),
                    flush=True,
                )
                runs.append(run)
    return runs


def verdict(runs: dict[tuple[str, str], Run]) -> list[str]:
    """The targets, each a line: measured, limit, met or missed."""
    lines = []
    for scenario, p in TARGET.items():
        key = ("peak_ewma", scenario)
        if key not in runs or ("peak_ewma", "healthy") not in runs:
            continue
        ours = runs[key].percentile(p)
        healthy = runs["peak_ewma", "healthy"].percentile(p)
        checks = [(f"{TARGET_VS_HEALTHY}x its healthy p{p:g}", healthy, TARGET_VS_HEALTHY)]
        if ("round_robin", scenario) in runs:
            rr = runs["round_robin", scenario].percentile(p)
            checks.append((f"{TARGET_VS_ROUND_ROBIN}x round_robin's", rr, TARGET_VS_ROUND_ROBIN))
        for what, base, limit in checks:
            ratio = ours / base
            lines.append(
                f"{scenario}: peak_ewma p{p:g} {ours * 1e3:.1f} ms = {ratio:.2f}x "
                f"({base * 1e3:.1f} ms); target <= {what}: {'met' if ratio <= limit else 'MISSED'}"
            )
    return lines


def log_ticks(ax: Any, which: str) -> None:
    """A log scale in milliseconds on ``which`` axis, labelled 10, 15, 20, 30, 50 ... (not 2 x 10^1)."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(FixedLocator([10, 15, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000]))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def plot(runs: list[Run], labels: list[str], title: str, quick: bool) -> None:
    """Top: p50/p90/p99/p99.9 bars per algorithm, one panel per scenario. Bottom: the tails."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(SCENARIOS), figsize=(11, 6.4), layout="constrained", sharey="row")
    by = {(r.algorithm, r.scenario): r for r in runs}
    width = 0.8 / len(PERCENTILES)
    for col, scenario in enumerate(SCENARIOS):
        ax = axes[0][col]
        for k, p in enumerate(PERCENTILES):
            values = [by[label, scenario].percentile(p) * 1e3 for label in labels]
            xs = [i + (k - (len(PERCENTILES) - 1) / 2) * width for i in range(len(labels))]
            ax.bar(xs, values, width, label=f"p{p:g}", color=f"C{k}")
        log_ticks(ax, "y")
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=25, ha="right")
        ax.set_title(scenario)
        tail = axes[1][col]
        for i, label in enumerate(labels):
            ordered = sorted(by[label, scenario].latencies)
            n = len(ordered)
            # Complementary CDF on log axes, at most ~400 points: every point of the last 1%.
            idx = sorted({*range(0, n, max(1, n // 300)), *range(max(0, n - n // 100 - 1), n)})
            xs = [ordered[j] * 1e3 for j in idx]
            ys = [1 - j / n for j in idx]
            tail.plot(xs, ys, label=label, color=f"C{i}", linewidth=1.2)
        log_ticks(tail, "x")
        tail.set_yscale("log")
        tail.set_xlabel("latency (ms)")
    axes[0][0].set_ylabel("latency (ms, log)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    axes[1][0].set_ylabel("fraction of requests slower")
    axes[1][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    save(fig, "tail_latency", quick)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 requests and 1 flap period per run")
    parser.add_argument("--requests", type=int, default=5000, help="per run (healthy, slow)")
    parser.add_argument("--periods", type=int, default=3, help="10 s flap periods per flapping run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated labels")
    args = parser.parse_args()
    args.algorithms = [a.strip() for a in args.algorithms.split(",")]
    unknown = [a for a in args.algorithms if a not in ALGORITHMS]
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {list(ALGORITHMS)}")
    if args.quick:
        args.requests, args.periods = 1000, 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    runs = asyncio.run(measure(args))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    setting = (
        f"{PODS} pods, 15-25 ms, {SLOW_POD} 10x; closed loop of {args.concurrency}; "
        f"{args.requests} requests per run, flapping >= {args.periods} x {FLAP_PERIOD:g} s"
    )
    print(f"\n{machine()}; {setting}; load average {load:.1f} before, {load_after:.1f} after")
    rows = [
        [
            r.scenario,
            r.algorithm,
            f"{len(r.latencies):,}",
            *(f"{r.percentile(p) * 1e3:.1f}" for p in PERCENTILES),
            f"{max(r.latencies) * 1e3:.0f}",
            f"{r.slow_share:.1%}",
            f"{len(r.latencies) / r.wall:,.0f}",
            f"{r.cpu / r.wall:.2f}",
            f"{percentile(r.lags, 99) * 1e3:.1f}",
        ]
        for scenario in SCENARIOS
        for r in runs
        if r.scenario == scenario
    ]
    headers = ["scenario", "algorithm", "requests", *(f"p{p:g} ms" for p in PERCENTILES)]
    print(table([*headers, "max ms", f"{SLOW_POD} share", "req/s", "client busy", "loop lag p99 ms"], rows))
    by = {(r.algorithm, r.scenario): r for r in runs}
    print("\n" + "\n".join(verdict(by)))
    plot(runs, args.algorithms, f"Latency per algorithm ({setting})", args.quick)


if __name__ == "__main__":
    main()
