"""least_request details: weight 0, the weighted cost, how many candidates are compared."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from helpers_algorithms import eps

from kube_balance import Endpoint, create
from kube_balance.algorithms import Algorithm


def loaded(algo: Algorithm, pool: list[Endpoint]) -> None:
    """Put endpoint i of ``pool`` at i requests in flight (its rank), and offer the whole pool."""
    for i, ep in enumerate(pool):
        algo.update([ep])
        for _ in range(i):
            algo.get()
    algo.update(pool)
    assert [algo.inflight(ep) for ep in pool] == list(range(len(pool)))


def picked_ranks(algo: Algorithm, pool: list[Endpoint], picks: int) -> Counter[int]:
    """How often each rank wins, each pick put back at once (so the loads stay the ranks)."""
    rank = {ep.key: i for i, ep in enumerate(pool)}
    counts: Counter[int] = Counter()
    for _ in range(picks):
        ep = algo.get()
        assert ep is not None
        counts[rank[ep.key]] += 1
        algo.put(ep)
    return counts


def test_weight_zero_endpoints_get_nothing(rng: random.Random) -> None:
    """A weight-0 endpoint next to weighted ones is never picked (and never divides by zero)."""
    algo = create("least_request", rng=rng)
    off = Endpoint("10.0.0.9", 80, weight=0)
    on = [Endpoint("10.0.0.1", 80, weight=1), Endpoint("10.0.0.2", 80, weight=2)]
    algo.update([off, *on])
    picks = {algo.get() for _ in range(60)}
    assert off not in picks and picks == set(on)


def test_weight_zero_next_to_one_endpoint_of_weight_one(rng: random.Random) -> None:
    """Weights {0, 1}: only the weight-1 endpoint, on every pick."""
    algo = create("least_request", choice_count=3, rng=rng)
    off, on = Endpoint("10.0.0.9", 80, weight=0), Endpoint("10.0.0.1", 80, weight=1)
    algo.update([off, on])
    assert {algo.get() for _ in range(20)} == {on}


@pytest.mark.parametrize("choice_count", [2, 3])
def test_all_zero_weights_pick_nothing(choice_count: int, rng: random.Random) -> None:
    """A pool whose every endpoint has weight 0 behaves as empty: get() returns None."""
    algo = create("least_request", choice_count=choice_count, rng=rng)
    algo.update([Endpoint("10.0.0.1", 80, weight=0), Endpoint("10.0.0.2", 80, weight=0)])
    assert algo.get() is None
    assert algo.total_inflight() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(20))
def test_first_pick_from_an_idle_1_to_3_pool_is_the_heavier(seed: int) -> None:
    """Cost (in flight + 1) / weight: idle, the weight-3 endpoint costs 1/3 against 1, so it wins."""
    algo = create("least_request", rng=random.Random(seed))
    light, heavy = Endpoint("10.0.0.1", 80, weight=1), Endpoint("10.0.0.2", 80, weight=3)
    algo.update([light, heavy] if seed % 2 else [heavy, light])
    assert algo.get() == heavy


def test_weighted_picks_follow_the_cost_sequence(rng: random.Random) -> None:
    """Weights 1:3, nothing put back: heavy, heavy, then light once heavy's cost reaches light's."""
    algo = create("least_request", rng=rng)
    light, heavy = Endpoint("10.0.0.1", 80, weight=1), Endpoint("10.0.0.2", 80, weight=3)
    algo.update([light, heavy])
    # costs before each pick (light, heavy): (1, 1/3) (1, 2/3) (1, 1) tie (then either) ...
    assert [algo.get(), algo.get()] == [heavy, heavy]
    third = algo.get()
    assert third in (light, heavy)
    fourth = algo.get()
    assert {third, fourth} == {light, heavy}  # at the tie each takes one before heavy goes on
    assert [algo.inflight(light), algo.inflight(heavy)] == [1, 3]


def test_general_path_compares_exactly_choice_count_candidates() -> None:
    """choice_count=3 of 10 loaded 0..9: ranks 0..7 win (never 8 or 9), rank 0 about 3 times in 10."""
    algo = create("least_request", choice_count=3, rng=random.Random(5))
    pool = eps(10)
    loaded(algo, pool)
    counts = picked_ranks(algo, pool, 3000)
    assert set(counts) == set(range(8))  # 2 candidates would let rank 8 win; 4 would keep rank 7 out
    assert 0.25 < counts[0] / 3000 < 0.35  # P(rank 0 among 3 of 10) = 0.3


def test_default_is_two_choices() -> None:
    """The default compares 2 candidates: rank 8 of 0..9 wins sometimes (drawn with 9), rank 9 never."""
    algo = create("least_request", rng=random.Random(6))
    pool = eps(10)
    loaded(algo, pool)
    counts = picked_ranks(algo, pool, 3000)
    assert set(counts) == set(range(9))
    assert 0.15 < counts[0] / 3000 < 0.25  # P(rank 0 among 2 of 10) = 0.2


@pytest.mark.parametrize("order", [0, 1])
def test_two_choices_over_two_endpoints_are_always_distinct(order: int, rng: random.Random) -> None:
    """Two endpoints, one busy: both are always the candidates, so the idle one always wins."""
    algo = create("least_request", rng=rng)
    idle, busy = eps(2)
    algo.update([busy])
    algo.get()
    algo.update([idle, busy] if order else [busy, idle])
    for _ in range(50):
        ep = algo.get()
        assert ep == idle
        algo.put(ep)


def test_weighted_general_path_compares_exactly_choice_count_candidates() -> None:
    """Weighted, choice_count=3 of 10 (weights 1 and 2, loads so cost ranks 0..9): ranks 8, 9 never win."""
    algo = create("least_request", choice_count=3, rng=random.Random(9))
    # Weight 2 endpoints at load 2r+1 cost (2r + 2) / 2 = r + 1; weight 1 ones at load r cost r + 1.
    pool = [Endpoint(f"10.0.1.{r + 1}", 80, weight=1 + r % 2) for r in range(10)]
    rank = {ep.key: r for r, ep in enumerate(pool)}
    for r, ep in enumerate(pool):
        algo.update([ep])
        for _ in range(r if ep.weight == 1 else 2 * r + 1):
            algo.get()
    algo.update(pool)
    counts: Counter[int] = Counter()
    for _ in range(3000):
        ep = algo.get()
        assert ep is not None
        counts[rank[ep.key]] += 1
        algo.put(ep)
    assert set(counts) == set(range(8))


def test_registered_name() -> None:
    """The algorithm is registered and reports itself as least_request."""
    assert create("least_request").name == "least_request"


def test_the_health_hooks_reach_least_request(rng: random.Random) -> None:
    """least_request takes the 429 penalty (phantom requests in flight) and slow start's weight
    factors: a penalized endpoint, or one at a tiny factor, loses every two-choice comparison."""
    pool = eps(2)
    algo = create("least_request", rng=rng)
    algo.update(pool)
    algo.penalize(pool[0].key, 5)  # type: ignore[attr-defined]
    picks = [algo.get() for _ in range(4)]  # held: pool[1] reaches 4 in flight, still under 5
    assert picks == [pool[1]] * 4
    assert algo.inflight(pool[0]) == 0  # the phantom load is not a real request
    for ep in picks:
        assert ep is not None
        algo.put(ep)
    algo.penalize(pool[0].key, -5)  # type: ignore[attr-defined]
    algo.set_weight_factors({pool[1].key: 0.001})  # type: ignore[attr-defined]
    assert Counter(algo.get() for _ in range(6)) == Counter({pool[0]: 6})
