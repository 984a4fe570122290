"""peak_ewma's wait: an endpoint that keeps a request longer than its estimate loses picks before it answers."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from helpers_algorithms import eps
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import Endpoint
from kube_balance.algorithms._peak_ewma import DEFAULT_DECAY, PeakEwma
from kube_balance.testing import FakeClock

FAST = 0.010  # every endpoint's estimate here (default_rtt), so the wait alone makes a difference


def algorithm(clock: object, n: int = 2, rng: random.Random | None = None, **options: float) -> PeakEwma:
    algo = PeakEwma(default_rtt=FAST, rng=rng or random.Random(1), clock=clock, **options)  # type: ignore[arg-type]
    algo.update(eps(n))
    return algo


def decayed(value: float, seconds: float) -> float:
    return value * math.exp(-seconds / DEFAULT_DECAY)


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9)


class SteppingClock:
    """A clock set by hand to any value, backwards or NaN included (a broken ``clock=``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_unanswered_request_loses_picks_before_any_answer(clock: FakeClock) -> None:
    """Two endpoints, 10 ms each. One keeps its request: it still wins while the wait is under its
    estimate (in flight x2 against a 3x costlier peer), and loses every pick once the wait is
    longer than the peer's cost, with no answer from it yet. Plain peak EWMA keeps picking it."""
    slow, peer = eps(2)
    algo = algorithm(clock)
    for _ in range(2):  # the peer: 3 requests in flight, cost 10 ms x 4; slow: one, 10 ms x 2
        assert algo.take(peer) is not None
    assert algo.take(slow) is not None
    assert algo.take(peer) is not None
    clock.advance(0.005)  # the wait (5 ms) is under slow's estimate: cost = estimate x 2
    assert algo.cost(slow) == approx(decayed(FAST, 0.005) * 2)
    assert algo.get() == slow
    clock.advance(0.025)  # its two requests have waited 30 ms: 30 x 3 = 90 ms > peer's 40 ms
    algo.put(peer)  # the peer answers one and takes another: still 3 in flight, no wait
    algo.take(peer)
    assert algo.wait(peer) == 0.0
    assert algo.wait(slow) == approx(0.030)
    assert algo.cost(slow) == approx(0.030 * 3)
    assert algo.cost(peer) == approx(decayed(FAST, 0.030) * 4)
    picks: Counter[str] = Counter()
    for _ in range(20):
        ep = algo.get()
        assert ep is not None
        picks[ep.key] += 1
        algo.put(ep)  # the peer answers at once; the slow endpoint is never picked to answer
        clock.advance(0.001)
    assert picks == {peer.key: 20}
    assert algo.wait(slow) == approx(0.050)


def test_without_the_wait_the_same_state_keeps_picking_the_slow_endpoint(clock: FakeClock) -> None:
    """The contrast: the same endpoint, answered at once, costs only its estimate and wins again."""
    slow, peer = eps(2)
    algo = algorithm(clock)
    for _ in range(3):
        algo.take(peer)
    algo.take(slow)
    clock.advance(0.030)
    algo.put(slow)  # answered (no sample): the wait is over
    algo.take(slow)
    assert algo.wait(slow) == 0.0
    assert algo.get() == slow


def test_exact_costs_and_waits(clock: FakeClock) -> None:
    """cost = max(decayed estimate, wait) x (in-flight + 1); wait = now - last progress while busy."""
    a, b = eps(2)
    algo = algorithm(clock)
    t0 = clock()
    assert algo.cost(a) == FAST
    assert algo.wait(a) == 0.0
    algo.take(a)
    clock.advance(0.25)
    assert algo.wait(a) == clock() - t0
    assert algo.cost(a) == (clock() - t0) * 2
    assert algo.cost(b) == approx(decayed(FAST, 0.25))
    algo.take(a)  # busy already: the wait goes on from t0
    clock.advance(0.25)
    assert algo.wait(a) == clock() - t0
    assert algo.cost(a) == (clock() - t0) * 3
    t1 = clock()
    algo.put(a)  # an answer, without a sample: progress all the same
    assert algo.wait(a) == 0.0
    clock.advance(0.125)
    assert algo.wait(a) == clock() - t1
    assert algo.cost(a) == (clock() - t1) * 2
    algo.put(a, elapsed=0.5)  # the last answer: a peak, and no wait
    assert algo.wait(a) == 0.0
    assert algo.cost(a) == 0.5
    clock.advance(DEFAULT_DECAY)
    assert algo.cost(a) == approx(0.5 / math.e)
    assert algo.ewma(a) == 0.5  # reading the cost stores nothing


def test_unknown_endpoints() -> None:
    algo = algorithm(FakeClock())
    assert algo.cost("10.9.9.9:80") is None
    assert algo.wait("10.9.9.9:80") == 0.0


def test_penalty_multiplies_the_cost_but_does_not_wait(clock: FakeClock) -> None:
    """The 429 penalty's phantom requests count in (in-flight + 1), never as a wait; a real pick of
    a penalised endpoint starts the wait, and its answer ends it."""
    a, _ = eps(2)
    algo = algorithm(clock)
    clock.advance(5.0)  # a stale stamp, far behind: the wait must not start from it
    algo.penalize(a.key, 3)
    assert algo.wait(a) == 0.0
    assert algo.cost(a) == approx(decayed(FAST, 5.0) * 4)
    t0 = clock()
    algo.take(a)
    clock.advance(1.0)
    assert algo.wait(a) == clock() - t0
    assert algo.cost(a) == (clock() - t0) * 5
    algo.put(a)
    assert algo.wait(a) == 0.0
    assert algo.cost(a) == approx(decayed(FAST, 6.0) * 4)
    algo.penalize(a.key, -3)
    assert algo.cost(a) == approx(decayed(FAST, 6.0))


def test_get_starts_the_wait_only_from_idle(clock: FakeClock) -> None:
    """get() on an idle endpoint starts its wait; on a busy one it leaves it running."""
    algo = algorithm(clock, n=1)
    (only,) = algo.endpoints
    clock.advance(3.0)
    t0 = clock()
    assert algo.get() == only  # one endpoint: no comparison, the wait starts all the same
    clock.advance(0.5)
    assert algo.get() == only
    clock.advance(0.5)
    assert algo.wait(only) == clock() - t0
    algo.add(Endpoint("10.0.0.9", 8080))  # a second endpoint: the first's wait counts in get()
    assert algo.get() == Endpoint("10.0.0.9", 8080)
    penalised = algorithm(clock, n=2)
    a, b = penalised.endpoints
    penalised.penalize(a.key, 1)
    penalised.penalize(b.key, 1)
    clock.advance(2.0)
    t1 = clock()
    first = penalised.get()  # a penalised but idle endpoint: its wait starts now, not at its stamp
    assert first is not None
    clock.advance(0.001)
    assert penalised.wait(first) == clock() - t1


def test_bookkeeping_across_removal_and_re_add(clock: FakeClock) -> None:
    """A removed endpoint with requests in flight keeps its wait; late answers restart it; back in
    the pool it competes with it; once idle and removed, it comes back fresh."""
    a, b = eps(2)
    algo = algorithm(clock)
    algo.take(a)
    algo.take(a)
    t0 = clock()
    clock.advance(0.5)
    algo.remove(a)
    assert algo.wait(a) == clock() - t0
    t1 = clock()
    algo.put(a, elapsed=0.5)  # a late answer, after removal: progress, but no sample
    assert algo.wait(a) == 0.0
    assert algo.ewma(a) == FAST
    assert algo.take(a) is None  # not active: a retry cannot take it
    clock.advance(0.25)
    algo.add(a)  # back while one request still drains: its wait goes on from t1
    assert algo.wait(a) == clock() - t1
    assert algo.cost(a) == (clock() - t1) * 2
    assert algo.get() == b  # 250 ms x 2 against 10 ms
    algo.put(b)
    algo.put(a, elapsed=0.020)
    assert algo.wait(a) == 0.0
    assert algo.inflight(a) == 0
    algo.remove(a)
    algo.add(a)  # idle when removed: a fresh slot, default estimate, no wait
    assert algo.cost(a) == FAST
    algo.put(a)  # a stray put changes nothing
    assert algo.inflight(a) == 0
    assert algo.wait(a) == 0.0


def test_clock_stepping_back_or_nan_falls_back_to_the_estimate() -> None:
    """A wait that is negative (clock stepped back) or NaN loses to the estimate; the next answer
    at a sane time restarts it."""
    clock = SteppingClock(1000.0)
    a, b = eps(2)
    algo = algorithm(clock)
    algo.take(a)
    algo.take(b)
    clock.now = 900.0  # stepped back: a's wait is -100 s
    assert algo.wait(a) == -100.0
    assert algo.cost(a) == FAST * 2
    clock.now = math.nan
    algo.put(b)  # an answer read at NaN: b's wait is NaN until its next answer
    algo.take(b)
    clock.now = 1001.0
    assert math.isnan(algo.wait(b))
    assert algo.cost(b) == approx(decayed(FAST, 1.0) * 2)
    assert algo.cost(a) == 1.0 * 2  # a's wait, a sane reading again
    assert algo.get() == b
    algo.put(b)
    clock.now = 1001.5
    assert algo.wait(b) == 0.5


def test_a_failed_request_also_restarts_the_wait(clock: FakeClock) -> None:
    a, _ = eps(2)
    algo = algorithm(clock)
    algo.take(a)
    algo.take(a)
    clock.advance(2.0)
    algo.put(a, failed=True)
    assert algo.wait(a) == 0.0
    assert algo.ewma(a) == 1.0  # the failure penalty


@pytest.mark.parametrize("seed", range(3))
def test_get_picks_the_cheaper_candidate(seed: int, clock: FakeClock) -> None:
    """With two endpoints (both candidates every time) get() picks the one cost() rates cheaper."""
    rng = random.Random(seed)
    algo = algorithm(clock, rng=random.Random(seed))
    pool = algo.endpoints
    for _ in range(300):
        for ep in pool:
            for _ in range(rng.randrange(3)):
                algo.take(ep)
            for _ in range(rng.randrange(3)):
                algo.put(ep, elapsed=rng.uniform(0.001, 0.2) if rng.random() < 0.5 else None)
        clock.advance(rng.choice([0.0, 0.001, 0.01, 0.1, 1.0]))
        costs = [algo.cost(ep) for ep in pool]
        assert costs[0] is not None and costs[1] is not None
        if abs(costs[0] - costs[1]) > 1e-9 * max(costs):
            expected = pool[0] if costs[0] < costs[1] else pool[1]
            picked = algo.get()
            assert picked == expected, (costs, [algo.wait(ep) for ep in pool])
            algo.put(picked)


Step = tuple[str, int, float]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["get", "take", "put", "put_failed", "remove", "add", "penalize", "unpenalize"]),
        st.integers(0, 3),
        st.sampled_from([0.0, 0.001, 0.1, 1.0, 30.0]),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS, seed=st.integers(0, 2**16))
def test_wait_matches_a_model_and_returns_to_zero(steps: list[Step], seed: int) -> None:
    """Against a model of every request in flight (its start time): each endpoint's wait is exactly
    now - max(last answer, start of its idle spell's end), never more than its oldest request's
    age, 0 when idle; once every request is answered, no endpoint waits and in-flight is 0."""
    clock = FakeClock(1000.0)
    pool = eps(4)
    algo = PeakEwma(rng=random.Random(seed), clock=clock)
    algo.update(pool)
    starts: dict[str, list[float]] = {ep.key: [] for ep in pool}  # requests in flight, by start
    since: dict[str, float] = {}
    active = {ep.key for ep in pool}
    penalties: Counter[str] = Counter()

    def sent(key: str) -> None:
        if not starts[key]:
            since[key] = clock()
        starts[key].append(clock())

    def answered(ep: Endpoint, failed: bool) -> None:
        algo.put(ep, elapsed=0.02, failed=failed)
        starts[ep.key].pop(0)  # which one does not matter to the wait
        since[ep.key] = clock()

    for action, i, dt in steps:
        ep = pool[i]
        clock.advance(dt)
        if action == "get":
            picked = algo.get()
            if picked is not None:
                sent(picked.key)
        elif action == "take":
            if algo.take(ep) is not None:
                assert ep.key in active
                sent(ep.key)
        elif action in ("put", "put_failed") and starts[ep.key]:
            answered(ep, action == "put_failed")
        elif action == "remove":
            algo.remove(ep)
            active.discard(ep.key)
        elif action == "add":
            algo.add(ep)
            active.add(ep.key)
        elif action == "penalize" and ep.key in active:
            algo.penalize(ep.key, 2)
            penalties[ep.key] += 2
        elif action == "unpenalize":
            algo.penalize(ep.key, -penalties[ep.key])
            penalties[ep.key] = 0
        for other in pool:
            assert algo.inflight(other) == len(starts[other.key])
            if starts[other.key]:
                assert algo.wait(other) == clock() - since[other.key]
                assert algo.wait(other) <= clock() - starts[other.key][0]
            else:
                assert algo.wait(other) == 0.0
    for ep in pool:
        while starts[ep.key]:
            answered(ep, False)
    assert algo.total_inflight() == 0
    assert all(algo.wait(ep) == 0.0 for ep in pool)
