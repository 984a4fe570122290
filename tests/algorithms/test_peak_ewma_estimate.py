"""peak_ewma's estimate, exactly: Linkerd's 10 s decay, the blend of a faster sample, stored decay."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from helpers_algorithms import eps

from kube_balance import create
from kube_balance.algorithms._peak_ewma import PeakEwma
from kube_balance.testing import FakeClock

LINKERD_DECAY = 10.0  # seconds, the documented default (linkerd2-proxy, Finagle)


class SteppingClock:
    """A clock set by hand to any value, backwards included."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def algorithm(clock: object, n: int = 2) -> PeakEwma:
    algo = PeakEwma(rng=random.Random(3), clock=clock)  # type: ignore[arg-type]
    algo.update(eps(n))
    return algo


def test_name_and_empty_pool() -> None:
    algo = create("peak_ewma")
    assert algo.name == "peak_ewma"
    assert algo.get() is None


def test_default_decay_is_ten_seconds(clock: FakeClock) -> None:
    """A 500 ms peak reads 500/e ms ten seconds later, through cost() and through get()'s stored decay."""
    a, b = eps(2)
    algo = algorithm(clock)
    for ep in (a, b):
        algo.take(ep)
        algo.put(ep, elapsed=0.5)
    clock.advance(LINKERD_DECAY)
    assert algo.cost(a) == pytest.approx(0.5 / math.e, rel=1e-9)
    picked = algo.get()  # both are candidates: both decayed, and stamped now
    assert picked is not None
    algo.put(picked)
    for ep in (a, b):
        assert algo.ewma(ep) == pytest.approx(0.5 / math.e, rel=1e-9)
        assert algo.cost(ep) == pytest.approx(0.5 / math.e, rel=1e-9)  # no second decay


def test_a_faster_sample_blends_by_the_time_since_the_last_update(clock: FakeClock) -> None:
    """ewma = ewma x w + sample x (1 - w), w = exp(-dt / 10 s); dt = 0 leaves the estimate as it was."""
    a, _ = eps(2)
    algo = algorithm(clock)
    algo.take(a)
    algo.put(a, elapsed=0.5)  # the peak, stamped now
    algo.take(a)
    algo.put(a, elapsed=0.1)  # dt = 0: weight 1 on the estimate
    assert algo.ewma(a) == 0.5
    algo.take(a)  # take() does not decay: dt reaches put()
    clock.advance(0.5)
    algo.put(a, elapsed=0.1)
    w = math.exp(-0.5 / LINKERD_DECAY)
    assert algo.ewma(a) == pytest.approx(0.5 * w + 0.1 * (1 - w), rel=1e-12)


def test_a_clock_stepping_back_blends_nothing() -> None:
    """dt < 0 (a clock stepped back): the faster sample has weight 0, the estimate stays."""
    clock = SteppingClock(1000.0)
    a, _ = eps(2)
    algo = algorithm(clock)
    algo.take(a)
    algo.put(a, elapsed=0.5)
    algo.take(a)
    clock.now = 999.5
    algo.put(a, elapsed=0.1)
    assert algo.ewma(a) == 0.5


def test_every_pair_is_compared() -> None:
    """Three endpoints, costs 1 < 2 < 3 units: the middle one wins its pair with the third, a third
    of the picks; the third never wins."""
    algo = algorithm(FakeClock(), n=3)
    first, middle, third = algo.endpoints
    for ep, load in ((first, 0), (middle, 1), (third, 2)):
        algo.penalize(ep.key, load)
    picks: Counter[str] = Counter()
    for _ in range(600):
        ep = algo.get()
        assert ep is not None
        picks[ep.key] += 1
        algo.put(ep)
    assert picks[third.key] == 0
    assert 150 <= picks[middle.key] <= 250, picks
