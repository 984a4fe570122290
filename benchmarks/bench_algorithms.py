"""Nanoseconds per get()+put() for each algorithm at 10 to 10,000 endpoints, as a ratio to an
empty Python call measured in the same run.

    python benchmarks/bench_algorithms.py [--quick] [--build pure|compiled|both]
        [--peak-ewma-baseline OLD_PEAK_EWMA.py]

Targets (issue 2): round_robin <= 4x, random <= 6x, least_request <= 12x, peak_ewma <= 24x.
They are judged on the release build (mypyc-compiled wheel); the pure-Python figures of a
source install are printed too.

``--peak-ewma-baseline``: another version of ``algorithms/_peak_ewma.py`` (for instance
``git show REV:src/kube_balance/algorithms/_peak_ewma.py > old.py``), loaded next to the
installed one; prints the installed one's get()+put() time as a ratio to it, both timed
interleaved in this run (pure Python only), idle and with a request in flight on every endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _compiled import run_compiled
from _harness import empty_call_ns, machine, ratio_to_empty, table
from kube_balance import Endpoint, create
from kube_balance.algorithms import KEYLESS

TARGETS = {"round_robin": 4, "random": 6, "least_request": 12, "peak_ewma": 24}
ALGORITHMS = KEYLESS  # the hash algorithms have their own benchmark


def endpoints(n: int, weighted: bool) -> list[Endpoint]:
    rng = random.Random(n)
    return [
        Endpoint(
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 8080, weight=rng.randint(1, 5) if weighted else 1
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--build", choices=["pure", "compiled", "both"], default="both")
    parser.add_argument("--peak-ewma-baseline", type=Path, help="an older _peak_ewma.py to compare with")
    args = parser.parse_args()
    if args.peak_ewma_baseline:
        compare_peak_ewma(args.peak_ewma_baseline, args.quick)
        return
    if args.build == "both":
        measure(args.quick)
        sys.exit(run_compiled(Path(__file__), *(["--quick"] if args.quick else []), "--build", "compiled"))
    measure(args.quick)


def measure(quick: bool) -> None:
    import kube_balance.algorithms._base as base

    build = (
        "compiled (release wheel)"
        if base.__file__.endswith((".so", ".pyd"))
        else "pure Python (source install)"
    )
    number = 20_000 if quick else 200_000
    sizes = [10, 100, 1_000, 10_000]
    base = empty_call_ns(number)
    print(f"\n# get()+put() per algorithm, {build}  ({machine()})")
    print(f"empty call: {base:.1f} ns\n")
    rows = []
    # peak_ewma also with a latency sample: put(ep, elapsed) is the path that updates its estimate.
    cases = [(name, name, "put(get())") for name in ALGORITHMS]
    cases.append(("peak_ewma, put with elapsed", "peak_ewma", "put(get(), 0.012)"))
    for label, name, stmt in cases:
        ratios = []
        for n in sizes:
            algo = create(name, rng=random.Random(1))
            algo.update(endpoints(n, weighted=name.startswith("weighted")))
            _, ratio = ratio_to_empty(stmt, {"get": algo.get, "put": algo.put}, number)
            ratios.append(ratio)
        target = TARGETS.get(label)
        worst = max(ratios)
        verdict = "" if target is None else ("ok" if worst <= target else "MISSED")
        rows.append([label, *(f"{r:.1f}x" for r in ratios), f"<= {target}x" if target else "-", verdict])
    print(table(["algorithm", *(f"n={n:,}" for n in sizes), "target", ""], rows))
    asyncio.run(through_balancer(number))


def compare_peak_ewma(path: Path, quick: bool) -> None:
    """The installed PeakEwma's get()+put() against the one in ``path``, interleaved, best of 7."""
    from kube_balance.algorithms._peak_ewma import PeakEwma

    spec = importlib.util.spec_from_file_location("kube_balance.algorithms._peak_ewma_baseline", path)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    number = 20_000 if quick else 200_000
    print(f"\n# peak_ewma get()+put(): installed vs {path.name}, pure Python  ({machine()})\n")
    rows = []
    for busy in (False, True):
        for stmt in ("put(get())", "put(get(), 0.012)"):
            cells = []
            for n in (10, 100, 1_000, 10_000):
                timers = []
                for cls in (old.PeakEwma, PeakEwma):
                    algo = cls(rng=random.Random(1))
                    algo.update(endpoints(n, weighted=False))
                    if busy:  # one request in flight everywhere: the wait is compared on every get()
                        for ep in algo.endpoints:
                            algo.take(ep)
                    timers.append(timeit.Timer(stmt, globals={"get": algo.get, "put": algo.put}))
                best = [float("inf")] * 2
                for _ in range(7):
                    for k, timer in enumerate(timers):
                        best[k] = min(best[k], timer.timeit(number))
                cells.append(
                    f"{best[0] / number * 1e9:.0f} / {best[1] / number * 1e9:.0f} ns = {best[1] / best[0]:.2f}x"
                )
            rows.append([("busy, " if busy else "idle, ") + stmt, *cells])
    print(table(["case (old / new)", *(f"n={n:,}" for n in (10, 100, 1_000, 10_000))], rows))


SEAM_TARGET_NS = 500.0
"""Issue 9: routing every pick and outcome through the LoadBalancer adds < 0.5 us per request."""


async def through_balancer(number: int) -> None:
    """What the outcome seam adds: ``lb.put(lb.get())`` (counters, observers) vs the algorithm's
    own ``put(get())``, least_request over 100 endpoints, timed interleaved in a running loop
    (where the balancer's get() finds its watcher started). Three balancers: no health steps
    (kube-proxy's rule only), the default policy (outlier ejection and the 429 penalty observe
    every put, nothing ejected), and the default policy plus one more (empty) observer."""
    from kube_balance import EndpointPolicy, LoadBalancer
    from kube_balance._policy import ready_else_serving_terminating
    from kube_balance.discovery import StaticSource

    eps = endpoints(100, weighted=False)
    rows = []
    cases = [
        ("no health steps", EndpointPolicy([ready_else_serving_terminating]), 0),
        ("default health policy", None, 0),
        ("default health policy + 1 observer", None, 1),
    ]
    for label, policy, observers in cases:
        lb = LoadBalancer("web.shop:80", source=StaticSource(eps), policy=policy, rng=random.Random(1))
        async with lb:
            await lb.wait_ready(5)
            algo = lb.algorithm
            for _ in range(observers):
                lb.add_observer(lambda ep, elapsed, outcome, status, retry_after: None)
            bare, _ = ratio_to_empty("put(get())", {"get": algo.get, "put": algo.put}, number)
            seam, _ = ratio_to_empty("put(get())", {"get": lb.get, "put": lb.put}, number)
            added = seam - bare
            verdict = "ok" if added < SEAM_TARGET_NS else "MISSED"
            rows.append(
                [f"least_request, n=100, {label}", f"{bare:.0f}", f"{seam:.0f}", f"{added:+.0f}", verdict]
            )
    print("\n# The outcome seam: LoadBalancer.get/put vs the algorithm's own (target: < 500 ns added)\n")
    print(table(["case", "algorithm ns", "through LoadBalancer ns", "added ns", ""], rows))


if __name__ == "__main__":
    main()
