"""Deterministic subsetting, simulated: load per backend across clients, and churn when one changes.

    python benchmarks/bench_subsetting.py [--quick] [--clients 100] [--backends 1000] [--size 20]

Every client computes its subset with the function under test; each sends the same number of
requests, round robin over its subset (equal shares: the spread measured is the subsetting's,
not a picker's noise). Three functions are compared:

- ``rendezvous``: each client's ``size`` highest hashes of (client, backend): stable, uneven;
- ``sre-book``: Google's deterministic subsetting (SRE book, chapter 20): a shuffle seeded per
  round of clients, subsets cut from it: even, reshuffled by any change;
- ``aperture``: ``kube_balance.deterministic_subset`` (windows on a hash-ordered ring).

The baseline is "no subset": every client connects to every backend. Churn: one backend leaves
(or joins), averaged over ``--events`` random picks; "clients changed" is the share of clients
whose subset is not the same, "connections replaced" the share of all client-backend pairs that
had to be opened anew. Writes ``benchmarks/results/subsetting.png`` (matplotlib).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from kube_balance import deterministic_subset

SubsetFn = Callable[[Sequence[str], int, int, int], frozenset[str]]
RESULTS = Path(__file__).resolve().parent / "results"


def rendezvous(backends: Sequence[str], size: int, client: int, count: int) -> frozenset[str]:
    def score(b: str) -> bytes:
        return hashlib.blake2b(f"{client}/{b}".encode(), digest_size=8).digest()

    return frozenset(sorted(backends, key=score)[:size])


def sre_book(backends: Sequence[str], size: int, client: int, count: int) -> frozenset[str]:
    """The SRE book's ``Subset(backends, client_id, subset_size)``, as printed there."""
    subset_count = max(1, len(backends) // size)
    shuffled = sorted(backends)
    random.Random(client // subset_count).shuffle(shuffled)
    start = (client % subset_count) * size
    return frozenset(shuffled[start : start + size])


def aperture(backends: Sequence[str], size: int, client: int, count: int) -> frozenset[str]:
    return frozenset(deterministic_subset(backends, size, client, count))


FUNCTIONS: dict[str, SubsetFn] = {"rendezvous": rendezvous, "sre-book": sre_book, "aperture": aperture}


def backend_names(n: int) -> list[str]:
    return [f"10.{i // 250}.{i % 250}.1:8080" for i in range(n)]


def load(
    subsets: list[frozenset[str]], backends: Sequence[str], per_client: int
) -> tuple[Counter[str], Counter[str]]:
    """Connections and requests per backend (every backend present, zeros included)."""
    conns: Counter[str] = Counter(dict.fromkeys(backends, 0))
    reqs: Counter[str] = Counter(dict.fromkeys(backends, 0))
    for subset in subsets:
        share = per_client / len(subset)
        for b in subset:
            conns[b] += 1
            reqs[b] += share  # type: ignore[assignment]
    return conns, reqs


def spread(counts: Counter[str]) -> float:
    values = list(counts.values())
    return max(values) / (sum(values) / len(values))


def churn(
    fn: SubsetFn,
    backends: list[str],
    size: int,
    clients: int,
    before: list[frozenset[str]],
    changed: list[str],
) -> tuple[float, float]:
    """Share of clients whose subset changed, share of connections opened anew."""
    after = [fn(changed, size, c, clients) for c in range(clients)]
    moved = sum(1 for a, b in zip(before, after, strict=True) if a != b)
    opened = sum(len(b - a) for a, b in zip(before, after, strict=True))
    return moved / clients, opened / sum(len(a) for a in before)


def peer_churn(
    fn: SubsetFn, backends: list[str], size: int, clients: int, before: list[frozenset[str]], rank: int
) -> tuple[float, float]:
    """One client joins at ``rank``: every client behind it moves up one rank, the count grows.
    (Rendezvous clients are named, not ranked: their subsets do not depend on the others.)"""
    after = [
        fn(backends, size, c if fn is rendezvous or c < rank else c + 1, clients + 1) for c in range(clients)
    ]
    moved = sum(1 for a, b in zip(before, after, strict=True) if a != b)
    opened = sum(len(b - a) for a, b in zip(before, after, strict=True))
    return moved / clients, opened / sum(len(a) for a in before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer churn events (smoke run)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--backends", type=int, default=1000)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--events", type=int, default=20, help="backends leaving (and joining), each apart")
    parser.add_argument("--requests", type=int, default=1000, help="requests per client")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    events = 3 if args.quick else args.events
    rng = random.Random(20261207)
    backends = backend_names(args.backends)
    started = time.perf_counter()
    print(
        f"# {platform.node()} {platform.python_version()} load average {os.getloadavg()[0]:.2f} "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
    )
    print(
        f"# {args.clients} clients x {args.backends} backends, subset {args.size}, {args.requests} "
        f"requests per client round robin; churn over {events} leaves and {events} joins"
    )
    print(
        f"{'function':<11} {'conns/client':>12} {'conns total':>11} {'req max/mean':>12} "
        f"{'conn max/mean':>13} {'leave: clients':>14} {'conns':>6} {'join: clients':>13} {'conns':>6}"
    )
    total = args.clients * args.backends
    print(
        f"{'no subset':<11} {args.backends:>12} {total:>11} {1.0:>12.3f} {1.0:>13.3f} "
        f"{'0.0%':>14} {'0.0%':>6} {'0.0%':>13} {'0.0%':>6}"
    )
    leaving = rng.sample(backends, events)
    joining = [f"10.9.{i}.2:8080" for i in range(events)]
    ranks = rng.sample(range(args.clients + 1), min(events, args.clients + 1))
    figures: dict[str, dict[str, object]] = {}
    for name, fn in FUNCTIONS.items():
        subsets = [fn(backends, args.size, c, args.clients) for c in range(args.clients)]
        conns, reqs = load(subsets, backends, args.requests)
        leaves = [
            churn(fn, backends, args.size, args.clients, subsets, [b for b in backends if b != gone])
            for gone in leaving
        ]
        joins = [churn(fn, backends, args.size, args.clients, subsets, [*backends, new]) for new in joining]
        leave_c, leave_o = (sum(x[i] for x in leaves) / events for i in (0, 1))
        join_c, join_o = (sum(x[i] for x in joins) / events for i in (0, 1))
        peers = [peer_churn(fn, backends, args.size, args.clients, subsets, r) for r in ranks]
        per_client = max(len(s) for s in subsets)
        print(
            f"{name:<11} {per_client:>12} {sum(conns.values()):>11} {spread(reqs):>12.3f} "
            f"{spread(conns):>13.3f} {leave_c:>14.1%} {leave_o:>6.1%} {join_c:>13.1%} {join_o:>6.1%}"
        )
        figures[name] = {
            "conns": sorted(conns.values(), reverse=True),
            "leave": leaves,
            "join": joins,
            "req": spread(reqs),
            "conn": spread(conns),
            "peer": peers,
        }
    print(f"# one client joins (mean of {len(ranks)} ranks): clients changed, connections opened anew")
    for name, f in figures.items():
        peer = f["peer"]
        clients_moved = sum(x[0] for x in peer) / len(peer)  # type: ignore[attr-defined, arg-type]
        opened = sum(x[1] for x in peer) / len(peer)  # type: ignore[attr-defined, arg-type]
        print(f"{name:<11} {clients_moved:>14.1%} {opened:>6.1%}")
    ours = figures["aperture"]
    ok = float(ours["req"]) <= 1.2 and float(ours["conn"]) <= 1.3  # type: ignore[arg-type]
    print(
        f"# aperture targets: requests max/mean <= 1.2, connections max/mean <= 1.3: {'met' if ok else 'MISSED'}"
    )
    print(
        f"# connections: {total} without subsetting, {args.clients * args.size} with "
        f"({total / (args.clients * args.size):.0f}x fewer); {time.perf_counter() - started:.1f} s"
    )
    if not args.no_plot:
        plot(figures, args, events)
    return 0 if ok else 1


def plot(figures: dict[str, dict[str, object]], args: argparse.Namespace, events: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"rendezvous": "-", "sre-book": "-", "aperture": "--"}  # sre-book and aperture overlap
    for name, f in figures.items():
        label = f"{name} (max/mean {f['conn']:.2f})"
        left.plot(f["conns"], styles[name], label=label, linewidth=2)  # type: ignore[arg-type]
    left.set_xlabel("backends, most connected first")
    left.set_ylabel("clients connected")
    left.set_title(f"{args.clients} clients x {args.backends} backends, subset {args.size}")
    left.legend()
    names = list(figures)
    xs = range(len(names))
    for offset, kind in ((-0.2, "leave"), (0.2, "join")):
        shares = [sum(x[0] for x in figures[n][kind]) / events * 100 for n in names]  # type: ignore[attr-defined]
        opened = [sum(x[1] for x in figures[n][kind]) / events * 100 for n in names]  # type: ignore[attr-defined]
        bars = right.bar([x + offset for x in xs], shares, width=0.4, label=f"one backend {kind}s")
        right.bar_label(bars, [f"{o:.1f}% conns" for o in opened], fontsize=8)
    right.set_xticks(list(xs), names)
    right.set_ylabel("clients whose subset changed (%)")
    right.set_ylim(0, 115)
    right.set_title(f"churn, mean of {events} events (labels: connections reopened)")
    right.legend()
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "subsetting.png"
    fig.savefig(out, dpi=90)
    print(f"# plot: {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    sys.exit(main())
