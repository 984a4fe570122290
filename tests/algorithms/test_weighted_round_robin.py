"""weighted_round_robin: exact proportions, smooth interleaving, plain RR for equal weights."""

from __future__ import annotations

import random
from collections import Counter

from helpers_algorithms import eps, pick_counts

from kube_balance import Endpoint, create


def test_exact_proportions(rng: random.Random) -> None:
    """Over 100 periods each endpoint gets its weight x 100 picks, give or take one."""
    algo = create("weighted_round_robin", rng=rng)
    pool = [Endpoint(f"10.0.0.{w}", 80, weight=w) for w in (1, 2, 3, 4)]
    algo.update(pool)
    counts = pick_counts(algo, 1000)
    for ep in pool:
        assert abs(counts[ep.key] - 100 * ep.weight) <= 1


def test_smooth_no_bursts(rng: random.Random) -> None:
    """In every window of one period (10 picks) the weight-4 endpoint gets 3 to 5 picks, not a burst of 10."""
    algo = create("weighted_round_robin", rng=rng)
    pool = [Endpoint(f"10.0.0.{w}", 80, weight=w) for w in (1, 2, 3, 4)]
    algo.update(pool)
    seq = []
    for _ in range(200):
        ep = algo.get()
        assert ep is not None
        seq.append(ep.key)
        algo.put(ep)
    for i in range(len(seq) - 10):
        assert 3 <= Counter(seq[i : i + 10])["10.0.0.4:80"] <= 5


def test_equal_weights_is_round_robin(rng: random.Random) -> None:
    """Equal weights give an exact round robin cycle."""
    algo = create("weighted_round_robin", rng=rng)
    algo.update(eps(5, weight=3))
    first = [algo.get() for _ in range(5)]
    assert len(set(first)) == 5
    assert [algo.get() for _ in range(5)] == first


def test_zero_weight_and_empty(rng: random.Random) -> None:
    """Weight 0 receives nothing; no endpoints gives None."""
    algo = create("weighted_round_robin", rng=rng)
    assert algo.get() is None
    algo.update([Endpoint("10.0.0.1", 80, weight=0), Endpoint("10.0.0.2", 80, weight=2)])
    assert set(pick_counts(algo, 50)) == {"10.0.0.2:80"}
