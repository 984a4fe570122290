"""A LoadBalancer over static endpoints, driven by hand: snapshots and outcomes without a loop."""

from __future__ import annotations

import random
from typing import Any

from kube_balance import Endpoint, EndpointSet, LoadBalancer, Outcome
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
