"""Requests/s and client CPU per request: aiohttp + BalancedConnector vs plain aiohttp.

    python benchmarks/bench_aiohttp.py [--quick] [--requests 5000] [--concurrency 50] [--rounds 10]
                                       [--shared-server]

Issue 9's setting, the same as ``bench_transport.py``'s for httpx: 50 concurrent tasks, 5,000
requests per client per round, pods in separate processes (4 aiohttp servers answering "ok", one
process each, as 4 pods are; ``--shared-server``: one process serving the 4 ports), so
``time.process_time()`` is the client's CPU alone. Four long-lived ``aiohttp.ClientSession``s,
all with aiohttp's defaults (``limit=100``):

- plain: ``aiohttp.ClientSession()`` to pod 0 by its IP address (``http://127.0.0.1:port/``);
- plain by name: the same to pod 0 by a host name (``http://localhost:port/``, resolved to
  127.0.0.1 once and cached by aiohttp): how an application without kube-balance calls a
  Service (``http://web.shop/``). aiohttp does more per request for a name than for an IP
  address (its cookie jar, for one, skips IP hosts), and the balanced clients' URLs name a
  Service, so this is the like-for-like baseline; both are shown;
- balanced x4: ``BalancedConnector`` over 4 pods (least_request);
- balanced x1: ``BalancedConnector`` over pod 0 only: the same server as plain, so the
  difference in client CPU per request is the connector's own cost.

"client busy" is the client's CPU seconds per wall second: near 1.00 the client saturates its
core and requests/s is 1 / (client CPU per request); below, the pods (which share the machine's
2 cores with it) set the pace too, and the requests/s ratio narrows toward 1. Both are shown.

Rounds are interleaved in a rotating order and each figure is the median over rounds of the ratio
to the plain client of the same round (the range shown), so a burst of load from another process
hits one round, not the result. The verdict compares with plain, as issue 9 words it; plain
by name is there for the like-for-like figure, and as a noise floor: two plain clients to one
server differ by as much as the noise does. Targets: balanced x4 and x1 >= 0.95x plain requests/s; the
connector's own cost <= 5 us per request (aiohttp's client itself costs about 70 us).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _harness import aiohttp_get, drive, freeze_heap, machine, table
from bench_transport import cpu_seconds, free_ports, start_pods
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector

HOST = "web.shop.svc.cluster.local"
PODS = 4
NAMES = ["plain", "plain by name", "balanced x4", "balanced x1"]
BASE = "plain by name"  # the like-for-like column (see the docstring); targets compare with plain
TARGETS = {"balanced x4": 0.95, "balanced x1": 0.95}


def sessions(ports: list[int]) -> dict[str, tuple[aiohttp.ClientSession, str]]:
    out = {"plain": (aiohttp.ClientSession(), f"http://127.0.0.1:{ports[0]}/")}
    by_name = aiohttp.TCPConnector(family=socket.AF_INET)  # localhost: 127.0.0.1, where the pods listen
    out["plain by name"] = (aiohttp.ClientSession(connector=by_name), f"http://localhost:{ports[0]}/")
    for name, n in (("balanced x4", PODS), ("balanced x1", 1)):
        source = StaticSource([f"127.0.0.1:{p}" for p in ports[:n]])
        out[name] = (
            aiohttp.ClientSession(connector=BalancedConnector("web.shop:80", source=source)),
            f"http://{HOST}/",
        )
    return out


async def measure(
    ports: list[int], pids: list[int], args: argparse.Namespace
) -> list[dict[str, tuple[float, float, float]]]:
    """Per round, per client: (requests/s, client CPU us per request, client busy)."""
    clients = sessions(ports)
    try:
        for session, url in clients.values():  # settle: connections open, caches warm
            await drive(aiohttp_get(session, url), 10 * args.concurrency, args.concurrency)
        freeze_heap()  # no full collection of the setup's objects inside a round (_harness)
        rounds = []
        for i in range(args.rounds):
            order = NAMES[i % len(NAMES) :] + NAMES[: i % len(NAMES)]
            result = {}
            for name in order:
                session, url = clients[name]
                wall, cpu = time.perf_counter(), time.process_time()
                await drive(aiohttp_get(session, url), args.requests, args.concurrency)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                result[name] = (args.requests / wall, cpu / args.requests * 1e6, cpu / wall)
            rounds.append(result)
        return rounds
    finally:
        for session, _ in clients.values():
            await session.close()


def report(rounds: list[dict[str, tuple[float, float, float]]], pods_cpu: float | None) -> str:
    rows = []
    for name in NAMES:
        cells = [name, f"{statistics.median(r[name][0] for r in rounds):,.0f}"]
        for base in (BASE, "plain"):  # the verdict below reads the last: plain
            ratios = [r[name][0] / r[base][0] for r in rounds]
            cells.insert(2, f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        target = TARGETS.get(name)
        met = "" if target is None else ("yes" if statistics.median(ratios) >= target else "NO")
        cells += [
            f"{statistics.median(r[name][1] for r in rounds):.0f}",
            f"{statistics.median(r[name][2] for r in rounds):.2f}",
            f">= {target}x {met}" if target else "-",
        ]
        rows.append(cells)
    headers = [
        "client",
        "requests/s",
        "vs plain (range)",
        f"vs {BASE} (range)",
        "client CPU us/request",
        "client busy",
        "target",
    ]
    lines = [table(headers, rows), ""]
    for base in ("plain", BASE):
        own = [r["balanced x1"][1] - r[base][1] for r in rounds]
        lines.append(
            f"Connector's own cost vs {base} (balanced x1 - {base} client CPU per request, median of "
            f"rounds): {statistics.median(own):+.1f} us (range {min(own):+.1f} .. {max(own):+.1f}; target <= 5 us)"
        )
    if pods_cpu is not None:
        lines.append(f"Pods' CPU over the run: {pods_cpu:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 500 requests (a smoke run)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--shared-server", action="store_true", help="one process serves all 4 pod ports")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 500, 1
    ports = free_ports(PODS)
    procs, stop = start_pods(ports, args.shared_server)
    try:
        pids = [p.pid for p in procs if p.pid]
        before = cpu_seconds(pids)
        rounds = asyncio.run(measure(ports, pids, args))
        after = cpu_seconds(pids)
    finally:
        stop.set()
        for proc in procs:
            proc.join(10)
    print(
        f"aiohttp: plain vs BalancedConnector, {args.requests} requests x {args.rounds} rounds, "
        f"{args.concurrency} concurrent, "
        f"{'1 process serving 4 pod ports' if args.shared_server else f'{PODS} pod processes'}; {machine()}\n"
    )
    print(report(rounds, None if before is None or after is None else after - before))


if __name__ == "__main__":
    main()
