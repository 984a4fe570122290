"""random and weighted_random: distributions tested as statistics (chi-square, alpha 1e-6)."""

from __future__ import annotations

import random

import pytest
from helpers_algorithms import eps, pick_counts
from scipy.stats import chisquare

from kube_balance import Endpoint, create

ALPHA = 1e-6  # grpc-go's roundrobin test utilities use the same threshold: never flaky with a fixed seed


def test_random_is_uniform(rng: random.Random) -> None:
    """Uniform random passes a chi-square test over 10 endpoints and 50,000 picks."""
    algo = create("random", rng=rng)
    pool = eps(10)
    algo.update(pool)
    counts = pick_counts(algo, 50_000)
    assert chisquare([counts[e.key] for e in pool]).pvalue > ALPHA


def test_weighted_random_follows_weights(rng: random.Random) -> None:
    """weighted_random matches weights 1:2:3:4 (chi-square), and weight 0 gets nothing."""
    algo = create("weighted_random", rng=rng)
    pool = [Endpoint(f"10.0.0.{w + 1}", 80, weight=w) for w in (1, 2, 3, 4, 0)]
    algo.update(pool)
    counts = pick_counts(algo, 50_000)
    assert counts[pool[4].key] == 0
    observed = [counts[e.key] for e in pool[:4]]
    expected = [50_000 * w / 10 for w in (1, 2, 3, 4)]
    assert chisquare(observed, expected).pvalue > ALPHA


@pytest.mark.parametrize("name", ["random", "weighted_random"])
def test_empty_is_none(name: str, rng: random.Random) -> None:
    """With no endpoint, get() returns None."""
    algo = create(name, rng=rng)
    assert algo.get() is None
    algo.update([Endpoint("10.0.0.1", 80, weight=0)])
    assert (algo.get() is None) == (name == "weighted_random")
