"""round_robin: exact cycles from a random offset."""

from __future__ import annotations

import random

from helpers_algorithms import eps, pick_counts

from kube_balance import create


def test_cycles_exactly(rng: random.Random) -> None:
    """n x k picks give every endpoint exactly k, in a fixed cyclic order."""
    algo = create("round_robin", rng=rng)
    algo.update(eps(7))
    first = [algo.get() for _ in range(7)]
    assert len({e.key for e in first if e}) == 7
    assert [algo.get() for _ in range(7)] == first
    assert set(pick_counts(algo, 7 * 100).values()) == {100}


def test_random_start_offset() -> None:
    """Clients restarted together do not all start on the same endpoint."""
    starts = set()
    for seed in range(40):
        algo = create("round_robin", rng=random.Random(seed))
        algo.update(eps(10))
        ep = algo.get()
        assert ep is not None
        starts.add(ep.key)
    assert len(starts) >= 8


def test_empty_returns_none_and_key_is_ignored(rng: random.Random) -> None:
    """No endpoints gives None; a key is accepted and ignored."""
    algo = create("round_robin", rng=rng)
    assert algo.get() is None
    algo.update(eps(2))
    assert algo.get("user-1") is not None
    algo.update([])
    assert algo.get() is None


def test_update_keeps_inflight_of_staying_endpoints(rng: random.Random) -> None:
    """Endpoints that stay through an update keep their in-flight count."""
    algo = create("round_robin", rng=rng)
    pool = eps(3)
    algo.update(pool)
    held = [algo.get() for _ in range(6)]
    algo.update([*pool, *eps(5)[3:]])
    assert [algo.inflight(e) for e in pool] == [2, 2, 2]
    for ep in held:
        assert ep is not None
        algo.put(ep)
    assert algo.total_inflight() == 0  # type: ignore[attr-defined]
