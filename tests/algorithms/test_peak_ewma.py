"""peak_ewma: traffic leaves a slow endpoint within a few decay periods and returns once it recovers."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from helpers_algorithms import eps

from kube_balance import ConfigurationError, Endpoint, create
from kube_balance.algorithms._peak_ewma import DEFAULT_DECAY, DEFAULT_RTT
from kube_balance.testing import FakeClock

FAST, SLOW = 0.010, 0.100


def run(algo: object, clock: FakeClock, latency: dict[str, float], until: float) -> Counter[str]:
    """Sequential requests, each taking its endpoint's latency on the fake clock, until a time."""
    counts: Counter[str] = Counter()
    for _ in range(100_000):  # bounded; ends by time long before
        if clock() >= until:
            return counts
        ep: Endpoint = algo.get()  # type: ignore[attr-defined]
        counts[ep.key] += 1
        clock.advance(latency[ep.key])
        algo.put(ep, elapsed=latency[ep.key])  # type: ignore[attr-defined]
    raise AssertionError("simulation did not reach its end time")


def test_moves_off_slow_endpoint_and_back(rng: random.Random, clock: FakeClock) -> None:
    """A 10x slower pod gets under 5% of traffic after 3 decay periods, and over 10% once it recovers."""
    algo = create("peak_ewma", rng=rng, clock=clock)
    pool = eps(5)
    algo.update(pool)
    slow = pool[0].key
    latency = {e.key: FAST for e in pool} | {slow: SLOW}

    start = clock()
    run(algo, clock, latency, start + 3 * DEFAULT_DECAY)  # warm-up: three decay periods
    settled = run(algo, clock, latency, start + 6 * DEFAULT_DECAY)
    assert settled[slow] / sum(settled.values()) < 0.05

    latency[slow] = FAST  # the pod recovers
    run(algo, clock, latency, clock() + 4 * DEFAULT_DECAY)
    recovered = run(algo, clock, latency, clock() + 2 * DEFAULT_DECAY)
    assert recovered[slow] / sum(recovered.values()) > 0.10  # a fair share is 20%


def test_cost_counts_inflight(rng: random.Random, clock: FakeClock) -> None:
    """Equal latency: in-flight load decides, so two endpoints share outstanding requests evenly."""
    algo = create("peak_ewma", rng=rng, clock=clock)
    pool = eps(2)
    algo.update(pool)
    for _ in range(100):
        algo.get()
    assert [algo.inflight(e) for e in pool] == [50, 50]


def test_defaults_and_peak(rng: random.Random, clock: FakeClock) -> None:
    """An unmeasured endpoint starts at 30 ms; a slower sample replaces the estimate at once (the peak)."""
    algo = create("peak_ewma", rng=rng, clock=clock)
    (ep,) = eps(1)
    algo.update([ep])
    assert algo.ewma(ep) == DEFAULT_RTT  # type: ignore[attr-defined]
    algo.get()
    algo.put(ep, elapsed=0.5)
    assert algo.ewma(ep) == 0.5  # type: ignore[attr-defined]
    clock.advance(DEFAULT_DECAY)
    algo.get()
    algo.put(ep, elapsed=0.0)
    assert algo.ewma(ep) == pytest.approx(0.5 * 2.718281828**-1, rel=1e-6)  # type: ignore[attr-defined]


def test_failure_penalty_moves_traffic(rng: random.Random, clock: FakeClock) -> None:
    """A failed request counts as 1 s, so the failing endpoint loses the next picks."""
    algo = create("peak_ewma", rng=rng, clock=clock)
    bad, good = eps(2)
    algo.update([bad, good])
    algo.put(algo.get() or bad, failed=True)
    loser = bad if algo.ewma(bad) == 1.0 else good  # type: ignore[attr-defined]
    for _ in range(20):
        ep = algo.get()
        assert ep is not None and ep != loser
        algo.put(ep, elapsed=0.01)
        clock.advance(0.01)


@pytest.mark.parametrize("option", ["decay", "default_rtt", "failure_penalty"])
@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1"])
def test_bad_options(option: str, bad: object) -> None:
    """Durations must be finite numbers of seconds > 0."""
    with pytest.raises(ConfigurationError, match=option):
        create("peak_ewma", **{option: bad})


@pytest.mark.parametrize("bad", [math.nan, -0.5, -1e-9, math.inf])
def test_invalid_elapsed_is_dropped(bad: float, rng: random.Random, clock: FakeClock) -> None:
    """A NaN, negative or infinite elapsed releases the request but leaves the estimate as it was."""
    algo = create("peak_ewma", rng=rng, clock=clock)
    pool = eps(2)
    algo.update(pool)
    ep = algo.get()
    algo.put(ep, elapsed=0.050)
    ep = algo.get()
    before = algo.ewma(ep)
    clock.advance(5.0)  # half a decay period: a sample would weigh 39%
    algo.put(ep, elapsed=bad)
    assert algo.ewma(ep) == before
    assert algo.total_inflight() == 0
    clock.advance(1.0)
    ep = algo.get()
    algo.put(ep, elapsed=0.200)  # valid samples still count
    assert algo.ewma(ep) == 0.200


def test_negative_sample_does_not_draw_traffic_to_a_dead_pod(rng: random.Random, clock: FakeClock) -> None:
    """One negative sample, then the pod stops answering: it gets a handful of 1,000 requests, not a third."""
    algo = create("peak_ewma", rng=rng, clock=clock)
    pool = eps(5)
    algo.update(pool)
    dead = pool[0]
    for _ in pool:
        algo.get()
    clock.advance(5.0)
    for ep in pool:  # every pod measured once, the dead one with a clock that stepped back
        algo.put(ep, elapsed=-0.5 if ep == dead else 0.010)
    picks: Counter[str] = Counter()
    for _ in range(1_000):
        ep = algo.get()
        picks[ep.key] += 1
        clock.advance(0.001)
        if ep != dead:  # the dead pod never answers: its requests stay in flight
            algo.put(ep, elapsed=0.010)
    assert picks[dead.key] <= 10, picks


class SteppingClock:
    """A clock set by hand to any value, backwards or NaN included (a broken ``clock=``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_clock_stepping_back_or_nan_does_not_freeze_decay(rng: random.Random) -> None:
    """A NaN or backward clock reading in put() never moves the stamp: the estimate still decays later."""
    clock = SteppingClock(1000.0)
    algo = create("peak_ewma", rng=rng, clock=clock)
    pool = eps(2)
    algo.update(pool)
    for now in (math.nan, 900.0):
        ep = algo.get()
        clock.now = now
        algo.put(ep, elapsed=0.500)  # a peak, recorded at a broken time
        assert algo.ewma(ep) == 0.500
        clock.now = 1000.0 + DEFAULT_DECAY
        held = algo.get()  # both endpoints decayed (two candidates of two)
        assert algo.ewma(ep) == pytest.approx(0.500 * math.exp(-1.0))
        algo.put(held)
        clock.now = 1000.0
        algo.update([])
        algo.update(pool)
