"""Small builders shared by the algorithm tests."""

from __future__ import annotations

from collections import Counter

from kube_balance import Endpoint
from kube_balance.algorithms import Algorithm


def eps(n: int, port: int = 8080, **meta: object) -> list[Endpoint]:
    """n distinct IPv4 endpoints 10.0.0.1.. on one port."""
    return [Endpoint(f"10.0.{i // 250}.{i % 250 + 1}", port, **meta) for i in range(n)]  # type: ignore[arg-type]


def pick_counts(algo: Algorithm, n: int, *, release: bool = True) -> Counter[str]:
    """Keys picked by n gets (each put back at once unless release is False)."""
    counts: Counter[str] = Counter()
    for _ in range(n):
        ep = algo.get()
        assert ep is not None
        counts[ep.key] += 1
        if release:
            algo.put(ep)
    return counts
