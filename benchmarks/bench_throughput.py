"""Requests/s as a bar chart: httpx and aiohttp, plain vs balanced over 1 and 4 pods.

    python benchmarks/bench_throughput.py [--quick] [--requests 5000] [--rounds 5] [--concurrency 50]

One run of the two client benchmarks' own measurements, side by side over the same 4 pod
processes (aiohttp servers answering "ok", apart from the client so it has its core):
``bench_transport.measure`` (httpx: plain ``httpx.AsyncClient`` to pod 0, ``BalancedTransport``
over the 4 pods and over pod 0 alone, each settled for ``--settle`` seconds first) and
``bench_aiohttp.measure`` (plain ``aiohttp.ClientSession`` to pod 0, ``BalancedConnector`` over
4 and over 1). Each script's docstring gives its design; nothing is measured differently here.

Figures are medians over interleaved rounds (rotating order) of requests/s and of the ratio to
the plain client of the same round, with the range over rounds; the chart draws the medians
with the range as error bars and writes ``results/throughput.png``. The pods do no work, so on a
2-core machine this is client CPU per request (see ``bench_transport.py``): more pods cannot
add requests/s the client has no CPU for. ``--quick``: one round of 500 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_aiohttp
import bench_transport
from _harness import machine, table
from _plot import pyplot, save

CLIENTS = ["plain", "balanced x1", "balanced x4"]
LABELS = {"plain": "plain\n1 pod", "balanced x1": "balanced\n1 pod", "balanced x4": "balanced\n4 pods"}
Rounds = list[dict[str, float]]  # per round: client -> requests/s


def run_httpx(ports: list[int], pids: list[int], args: argparse.Namespace) -> Rounds:
    results = asyncio.run(
        bench_transport.measure(ports, pids, args, args.requests // args.rounds, args.rounds)
    )
    return [{name: r[name].rps for name in CLIENTS} for r in results]


def run_aiohttp(ports: list[int], pids: list[int], args: argparse.Namespace) -> Rounds:
    per_round = argparse.Namespace(**{**vars(args), "requests": args.requests // args.rounds})
    results = asyncio.run(bench_aiohttp.measure(ports, pids, per_round))
    return [{name: r[name][0] for name in CLIENTS} for r in results]


def summary(rounds: Rounds) -> dict[str, tuple[float, float, float, float]]:
    """client -> (median requests/s, median ratio to plain, lowest ratio, highest ratio)."""
    out = {}
    for name in CLIENTS:
        ratios = [r[name] / r["plain"] for r in rounds]
        rps = statistics.median(r[name] for r in rounds)
        out[name] = (rps, statistics.median(ratios), min(ratios), max(ratios))
    return out


def plot(results: dict[str, dict[str, tuple[float, float, float, float]]], title: str, quick: bool) -> None:
    """One panel per library (their requests/s differ several-fold), a bar per client."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(7.5, 3.6), layout="constrained")
    for ax, (lib, by_client) in zip(axes, results.items(), strict=True):
        rps = [by_client[name][0] for name in CLIENTS]
        # Error bars: the range of the ratio to plain over rounds, applied to the median.
        low = [
            rps_ * (1 - lo / ratio) for rps_, (_, ratio, lo, _) in zip(rps, by_client.values(), strict=True)
        ]
        high = [
            rps_ * (hi / ratio - 1) for rps_, (_, ratio, _, hi) in zip(rps, by_client.values(), strict=True)
        ]
        bars = ax.bar(range(len(CLIENTS)), rps, yerr=[low, high], capsize=3, color=["grey", "C1", "C2"])
        for bar, name, top in zip(bars, CLIENTS, high, strict=True):
            ax.annotate(
                f"{by_client[name][1]:.2f}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height() + top),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.margins(y=0.12)
        ax.set_xticks(range(len(CLIENTS)), [LABELS[name] for name in CLIENTS], fontsize=8)
        ax.set_title(lib)
    axes[0].set_ylabel("requests/s (median of rounds)")
    fig.suptitle(title, fontsize=9)
    save(fig, "throughput", quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 500 requests per client")
    parser.add_argument("--requests", type=int, default=5000, help="per client, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--settle", type=float, default=6.0, help="httpx: seconds of untimed load first")
    args = parser.parse_args()
    args.max_connections = 0  # httpx's default limits, as bench_transport's headline figures
    if args.quick:
        args.requests, args.rounds, args.settle = 500, 1, 1.0
    ports = bench_transport.free_ports(bench_transport.PODS)
    procs, stop = bench_transport.start_pods(ports, shared=False)
    pids = [p.pid for p in procs if p.pid]
    try:
        rounds = {"httpx": run_httpx(ports, pids, args), "aiohttp": run_aiohttp(ports, pids, args)}
    finally:
        stop.set()
        for p in procs:
            p.join(10)
    results = {lib: summary(r) for lib, r in rounds.items()}
    setting = (
        f"{args.requests} requests per client in {args.rounds} round(s), {args.concurrency} concurrent, "
        f"{bench_transport.PODS} pod processes"
    )
    print(f"{machine()}; {setting}")
    rows = [
        [lib, name, f"{rps:,.0f}", f"{ratio:.2f}x ({lo:.2f}-{hi:.2f})"]
        for lib, by_client in results.items()
        for name, (rps, ratio, lo, hi) in by_client.items()
    ]
    print(table(["library", "client", "requests/s", "vs plain (range)"], rows))
    plot(results, f"Requests/s, plain vs balanced, ratio to plain on each bar\n({setting})", args.quick)


if __name__ == "__main__":
    main()
