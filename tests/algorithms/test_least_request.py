"""least_request: power of two choices over in-flight counts."""

from __future__ import annotations

import random

import pytest
from helpers_algorithms import eps

from kube_balance import ConfigurationError, Endpoint, create


def test_never_picks_the_most_loaded_of_three(rng: random.Random) -> None:
    """Two distinct candidates: the busiest endpoint can never win while the others are idle."""
    algo = create("least_request", rng=rng)
    pool = eps(3)
    algo.update(pool)
    busy = pool[0]
    algo.update([busy])
    for _ in range(10):
        algo.get()
    algo.update(pool)
    assert algo.inflight(busy) == 10
    for _ in range(200):
        ep = algo.get()
        assert ep is not None and ep != busy
        algo.put(ep)


def test_load_stays_balanced_without_puts() -> None:
    """1,000 outstanding requests on 10 endpoints: P2C keeps the gap within 3, random lets it reach 10+."""
    gaps = {}
    for name in ("least_request", "random"):
        algo = create(name, rng=random.Random(7))
        pool = eps(10)
        algo.update(pool)
        for _ in range(1000):
            algo.get()
        loads = [algo.inflight(e) for e in pool]
        assert sum(loads) == 1000
        gaps[name] = max(loads) - min(loads)
    assert gaps["least_request"] <= 3  # O(log log n) for two choices (Azar et al.)
    assert gaps["random"] >= 10  # O(sqrt(m log n / n)) for one choice


def test_full_choice_count_is_exact_least_loaded(rng: random.Random) -> None:
    """choice_count >= n compares every endpoint: loads never differ by more than one."""
    algo = create("least_request", choice_count=8, rng=rng)
    pool = eps(8)
    algo.update(pool)
    for _ in range(803):
        algo.get()
        loads = [algo.inflight(e) for e in pool]
        assert max(loads) - min(loads) <= 1


def test_weights_scale_load(rng: random.Random) -> None:
    """With weights 1 and 3, outstanding load settles near 1:3."""
    algo = create("least_request", rng=rng)
    light, heavy = Endpoint("10.0.0.1", 80, weight=1), Endpoint("10.0.0.2", 80, weight=3)
    algo.update([light, heavy])
    for _ in range(400):
        algo.get()
    assert algo.inflight(light) == 100
    assert algo.inflight(heavy) == 300


def test_single_and_empty(rng: random.Random) -> None:
    """One endpoint always wins; none gives None."""
    algo = create("least_request", rng=rng)
    assert algo.get() is None
    algo.update(eps(1))
    assert algo.get() == eps(1)[0]


@pytest.mark.parametrize("bad", [1, 0, -2, 2.5, True, "2"])
def test_bad_choice_count(bad: object) -> None:
    """choice_count must be an int >= 2."""
    with pytest.raises(ConfigurationError, match="choice_count"):
        create("least_request", choice_count=bad)


@pytest.mark.parametrize("choice_count", [2, 5])
def test_ties_are_broken_at_random(choice_count: int, rng: random.Random) -> None:
    """Sequential requests (always a tie at 0) spread over two endpoints instead of all going to the first."""
    algo = create("least_request", choice_count=choice_count, rng=rng)
    pool = eps(2)
    algo.update(pool)
    counts = {e.key: 0 for e in pool}
    for _ in range(1000):
        ep = algo.get()
        assert ep is not None
        counts[ep.key] += 1
        algo.put(ep)
    assert min(counts.values()) > 400
