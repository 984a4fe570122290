"""A LoadBalancer over static endpoints, driven by hand: snapshots and outcomes without a loop;
an outlier detector's balancer and what its tests read of it."""

from __future__ import annotations

import random
from typing import Any

from kube_balance import Endpoint, EndpointPolicy, EndpointSet, LoadBalancer, Outcome
from kube_balance._outlier import OutlierDetector, SuccessRate
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock


def endpoints(n: int) -> list[Endpoint]:
    """``n`` endpoints 10.0.0.1:8080, 10.0.0.2:8080, ..."""
    return [Endpoint(f"10.0.0.{i + 1}", 8080) for i in range(n)]


def balancer(
    n: int, clock: FakeClock, rng: random.Random, **options: Any
) -> tuple[LoadBalancer, list[Endpoint]]:
    """A balancer with ``n`` endpoints delivered as its first snapshot (no watcher running)."""
    eps = endpoints(n)
    lb = LoadBalancer("web.shop:80", source=StaticSource(), clock=clock, rng=rng, **options)
    lb.on_endpoints(EndpointSet(tuple(eps)))
    return lb, eps


def fail(
    lb: LoadBalancer, ep: Endpoint, times: int = 1, outcome: Outcome = Outcome.CONNECT_FAILED, **kw: Any
) -> None:
    """Report ``times`` outcomes of ``outcome`` on ``ep`` (a pick and its put, as the dispatcher does)."""
    for _ in range(times):
        lb.put(ep, 0.001, outcome.failed, outcome, **kw)


def ok(lb: LoadBalancer, ep: Endpoint, times: int = 1) -> None:
    """Report ``times`` successes on ``ep``."""
    for _ in range(times):
        lb.put(ep, 0.001, False, Outcome.OK, 200)


def keys(eps: tuple[Endpoint, ...] | list[Endpoint]) -> list[str]:
    """The endpoints' keys, in order."""
    return [e.key for e in eps]


def detector_lb(
    n: int, clock: FakeClock, rng: random.Random, /, **options: Any
) -> tuple[LoadBalancer, list[Endpoint], OutlierDetector]:
    """A balancer whose policy has an OutlierDetector with ``options`` (no panic)."""
    detector = OutlierDetector(**options)
    lb, eps = balancer(n, clock, rng, policy=EndpointPolicy.default(outlier=detector, panic_threshold=0))
    return lb, eps, detector


def rate_lb(
    n: int, clock: FakeClock, rng: random.Random, /, **options: Any
) -> tuple[LoadBalancer, list[Endpoint], OutlierDetector]:
    """:func:`detector_lb` judging by success rate alone (``SuccessRate()``, up to half ejected)."""
    options = {"success_rate": SuccessRate(), "max_ejection_percent": 50, **options}
    return detector_lb(n, clock, rng, consecutive_failures=1000, **options)


def window(lb: LoadBalancer, eps: list[Endpoint], rates: list[float], requests: int = 100) -> None:
    """``requests`` outcomes on each endpoint, successes first, at the given success rates."""
    for ep, rate in zip(eps, rates, strict=True):
        good = round(requests * rate)
        ok(lb, ep, good)
        fail(lb, ep, requests - good, Outcome.SERVER_ERROR, status=500)


def ejection_durations(lb: LoadBalancer, clock: FakeClock, eps: list[Endpoint], times: int) -> list[float]:
    """How long ``eps[0]`` stays out on each of ``times`` ejections in a row (back, then failing
    again at once; ``eps[1]``'s success returns it)."""
    durations = []
    fail(lb, eps[0], 5)
    for _ in range(times):
        ejection = lb.status().ejected[eps[0].key]
        durations.append(ejection.until - ejection.since)
        clock.advance(ejection.until - clock())
        ok(lb, eps[1])
        fail(lb, eps[0])
    return durations


def phantom(lb: LoadBalancer, ep: Endpoint) -> int:
    """The phantom requests in flight the health steps put on an endpoint's slot."""
    slot = lb.algorithm._slots.get(ep.key)  # type: ignore[attr-defined]
    return 0 if slot is None else int(slot.penalty)
