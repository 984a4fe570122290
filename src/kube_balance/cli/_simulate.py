"""A discrete-event simulation of the algorithms: 10 pods, one 10x slower, a closed loop of clients.

It drives the real algorithm objects (``get()``/``put()`` with measured latency) on a simulated
clock, so 20,000 requests per algorithm take well under a second each and every run is
reproducible. Each pod serves ``pod_concurrency`` requests at a time and queues the rest, so a pod
that receives more than its share makes its requests wait: that is where load-aware algorithms
earn their keep.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._endpoint import Endpoint
from ..algorithms import KEYLESS, available, create
from ..testing import FakeClock


@dataclass
class Pod:
    """A simulated pod: a few workers, a FIFO queue, a mean service time."""

    endpoint: Endpoint
    mean_service: float
    workers: int
    busy: int = 0
    queue: deque[int] = field(default_factory=deque)
    served: int = 0


@dataclass(frozen=True)
class Result:
    """What one algorithm did in one simulation."""

    algorithm: str
    shares: tuple[float, ...]  # fraction of requests per pod, pod 0 is the slow one
    p50: float
    p99: float
    mean: float


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def simulate(
    algorithm: str,
    *,
    pods: int = 10,
    slow_factor: float = 10.0,
    requests: int = 20_000,
    concurrency: int = 64,
    mean_service: float = 0.010,
    pod_concurrency: int = 4,
    seed: int = 1,
    label: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Result:
    """Run ``requests`` through ``algorithm`` with ``concurrency`` requests always outstanding."""
    rng = random.Random(seed)
    clock = FakeClock()
    algo = create(algorithm, rng=random.Random(seed), clock=clock, **dict(options or {}))
    fleet = [
        Pod(
            Endpoint(f"10.0.0.{i + 1}", 8080),
            mean_service * (slow_factor if i == 0 else 1.0),
            pod_concurrency,
        )
        for i in range(pods)
    ]
    by_key = {pod.endpoint.key: pod for pod in fleet}
    algo.update(pod.endpoint for pod in fleet)

    events: list[tuple[float, int, str, int]] = []  # (time, seq, pod key, request id)
    started: dict[int, float] = {}
    latencies: list[float] = []
    seq = 0

    def begin_service(pod: Pod, rid: int) -> None:
        nonlocal seq
        pod.busy += 1
        seq += 1
        heapq.heappush(
            events, (clock() + rng.expovariate(1.0 / pod.mean_service), seq, pod.endpoint.key, rid)
        )

    def send(rid: int) -> None:
        key = str(rng.randrange(1_000_000)) if algo.requires_key else None
        endpoint = algo.get(key)
        assert endpoint is not None
        pod = by_key[endpoint.key]
        started[rid] = clock()
        if pod.busy < pod.workers:
            begin_service(pod, rid)
        else:
            pod.queue.append(rid)

    next_id = 0
    for _ in range(min(concurrency, requests)):
        send(next_id)
        next_id += 1
    while events:
        when, _, key, rid = heapq.heappop(events)
        clock.advance(when - clock())
        pod = by_key[key]
        pod.busy -= 1
        pod.served += 1
        elapsed = clock() - started.pop(rid)
        latencies.append(elapsed)
        algo.put(pod.endpoint, elapsed=elapsed)
        if pod.queue:
            begin_service(pod, pod.queue.popleft())
        if next_id < requests:
            send(next_id)
            next_id += 1
    latencies.sort()
    total = sum(p.served for p in fleet)
    return Result(
        label or algorithm,
        tuple(p.served / total for p in fleet),
        _percentile(latencies, 0.50),
        _percentile(latencies, 0.99),
        sum(latencies) / len(latencies),
    )


def report(results: Sequence[Result], *, requests: int, pods: int, slow_factor: float) -> str:
    """Two tables: latency per algorithm, and each pod's share of requests."""
    lines = [
        f"{requests:,} requests per algorithm, {pods} pods (pod 0 is {slow_factor:g}x slower), "
        "simulated clock",
        "",
        f"{'algorithm':<24}{'slow pod share':>15}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}",
    ]
    for r in results:
        lines.append(
            f"{r.algorithm:<24}{r.shares[0]:>14.1%} {r.p50 * 1e3:>8.1f} {r.p99 * 1e3:>8.1f} {r.mean * 1e3:>8.1f}"
        )
    lines += ["", f"{'share per pod':<24}" + "".join(f"{'pod' + str(i):>7}" for i in range(pods))]
    for r in results:
        lines.append(f"{r.algorithm:<24}" + "".join(f"{s:>7.1%}" for s in r.shares))
    return "\n".join(lines)


BOUNDED = {"load_factor": 1.25}  # Envoy's hash_balance_factor 125


def main(requests: int = 20_000, algorithms: Sequence[str] | None = None) -> str:
    """Simulate every algorithm (hash ones with and without bounded loads) and return the report."""
    names = list(algorithms or [*KEYLESS, *(n for n in available() if n not in KEYLESS)])
    runs: list[tuple[str, str, Mapping[str, Any]]] = []
    for name in names:
        runs.append((name, name, {}))
        if name in ("ring_hash", "maglev"):
            runs.append((f"{name} bounded 1.25", name, BOUNDED))
    results = [simulate(name, requests=requests, label=label, options=opts) for label, name, opts in runs]
    return report(results, requests=requests, pods=10, slow_factor=10.0)
