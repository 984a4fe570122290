"""The 429 penalty: a 429 (or a 503 with Retry-After) steers load-aware algorithms away for
Retry-After seconds, without ejecting the endpoint."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from helpers_health import balancer, fail, ok
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import ConfigurationError, Endpoint, EndpointPolicy, EndpointSet, LoadBalancer, Outcome
from kube_balance._health import HealthReport
from kube_balance._penalty import OverloadPenalty
from kube_balance.testing import FakeClock


def share(lb: LoadBalancer, ep: Endpoint, picks: int = 400, held: int = 8) -> float:
    """``ep``'s share of ``picks`` picks, with ``held`` requests kept in flight (a loaded client)."""
    inflight = [lb.get() for _ in range(held)]
    seen: Counter[str] = Counter()
    for _ in range(picks):
        picked = lb.get()
        assert picked is not None
        seen[picked.key] += 1
        inflight.append(picked)
        done = inflight.pop(0)
        assert done is not None
        lb.put(done, 0.01, False, Outcome.OK, 200)
    for done in inflight:
        assert done is not None
        lb.put(done, 0.01, False, Outcome.OK, 200)
    return seen[ep.key] / picks


def overloaded(lb: LoadBalancer, ep: Endpoint, retry_after: float | None, status: int = 429) -> None:
    """Report one 429 (or 503) from ``ep`` with ``retry_after``."""
    outcome = Outcome.OVERLOADED if status == 429 else Outcome.SERVER_ERROR
    lb.put(ep, 0.001, True, outcome, status, retry_after)


@pytest.mark.parametrize("algorithm", ["least_request", "peak_ewma"])
def test_429_steers_away_for_retry_after_seconds(
    algorithm: str, clock: FakeClock, rng: random.Random
) -> None:
    """For Retry-After seconds the endpoint gets almost nothing, then its fair share again."""
    lb, eps = balancer(4, clock, rng, algorithm=algorithm)
    assert 0.15 < share(lb, eps[0]) < 0.35
    overloaded(lb, eps[0], 2.0)
    assert lb.status().penalized == {eps[0].key: clock() + 2.0}
    assert share(lb, eps[0]) < 0.02
    assert eps[0] in lb.eligible and not lb.status().ejected
    clock.advance(2.0)
    ok(lb, eps[1])  # the next outcome (of any endpoint) ends the penalty
    assert lb.status().penalized == {}
    assert 0.15 < share(lb, eps[0]) < 0.35


def test_the_penalty_is_not_a_real_request_in_flight(clock: FakeClock, rng: random.Random) -> None:
    """inflight() and status().inflight report real requests only, during and after a penalty."""
    lb, eps = balancer(4, clock, rng)
    overloaded(lb, eps[0], 3.0)
    assert lb.algorithm.inflight(eps[0]) == 0 and lb.status().inflight == 0
    clock.advance(3)
    assert lb.status().penalized == {} and lb.status().inflight == 0


@pytest.mark.parametrize(
    ("retry_after", "status", "seconds"),
    [(None, 429, 5.0), (7.0, 429, 7.0), (300.0, 429, 30.0), (4.0, 503, 4.0)],
)
def test_penalty_time(
    retry_after: float | None, status: int, seconds: float, clock: FakeClock, rng: random.Random
) -> None:
    """Retry-After seconds; 5 s when absent (Linkerd); capped at 30 s; a 503 with Retry-After too."""
    lb, eps = balancer(4, clock, rng)
    overloaded(lb, eps[0], retry_after, status)
    assert lb.status().penalized == {eps[0].key: clock() + seconds}


def test_a_503_without_retry_after_is_no_penalty(clock: FakeClock, rng: random.Random) -> None:
    """A plain 503 is a failure for outlier ejection, not a request to back off."""
    lb, eps = balancer(4, clock, rng)
    overloaded(lb, eps[0], None, 503)
    assert lb.status().penalized == {}


def test_a_retry_after_of_0_is_no_penalty(clock: FakeClock, rng: random.Random) -> None:
    """A 429 with Retry-After: 0 ("come back now") weighs on nothing, not even until the next
    outcome: of two endpoints, least_request picks each once (a penalised one would lose both)."""
    lb, eps = balancer(2, clock, rng)
    overloaded(lb, eps[0], 0.0)
    picks = [lb.get() for _ in range(2)]
    assert sorted(p.key for p in picks if p is not None) == [eps[0].key, eps[1].key]
    assert lb.status().penalized == {}


def test_an_unbound_penalty_without_a_clock_holds_nothing() -> None:
    """A step used on its own with no clock (no balancer gave it one) cannot time a penalty: it
    holds none, and reports none."""
    step = OverloadPenalty()
    step.penalize("10.0.0.1:80", 1.0)
    assert step.penalized == {}
    health = HealthReport()
    step.report(health)
    assert health.penalized == {}


def test_a_later_429_extends_never_shortens(clock: FakeClock, rng: random.Random) -> None:
    """A new 429 moves the end later; one with a shorter Retry-After leaves it."""
    lb, eps = balancer(4, clock, rng)
    overloaded(lb, eps[0], 10.0)
    clock.advance(1)
    overloaded(lb, eps[0], 2.0)
    assert lb.status().penalized == {eps[0].key: clock() + 9.0}
    overloaded(lb, eps[0], 20.0)
    assert lb.status().penalized == {eps[0].key: clock() + 20.0}


def test_never_ejects(clock: FakeClock, rng: random.Random) -> None:
    """Fifty 429s in a row: penalised, never ejected."""
    lb, eps = balancer(4, clock, rng)
    for _ in range(50):
        overloaded(lb, eps[0], 1.0)
    assert lb.status().ejected == {} and eps[0] in lb.eligible


def test_every_endpoint_penalised_is_balanced_by_load(clock: FakeClock, rng: random.Random) -> None:
    """When all endpoints are busy the penalties cancel out: each still gets a fair share."""
    lb, eps = balancer(4, clock, rng)
    for ep in eps:
        overloaded(lb, ep, 10.0)
    assert all(0.15 < share(lb, ep) < 0.35 for ep in eps[:1])


def test_ignored_by_algorithms_that_do_not_compare_load(clock: FakeClock, rng: random.Random) -> None:
    """round_robin ignores the penalty, and its in-flight counts stay true."""
    lb, eps = balancer(4, clock, rng, algorithm="round_robin")
    overloaded(lb, eps[0], 10.0)
    assert share(lb, eps[0]) == 0.25
    assert lb.status().inflight == 0


def test_an_endpoint_removed_while_penalised_drains_to_zero(clock: FakeClock, rng: random.Random) -> None:
    """The penalty goes with the endpoint: its slot's count is back to its real requests."""
    lb, eps = balancer(4, clock, rng)
    held = lb.get()
    assert held is not None
    lb.algorithm.penalize(held.key, 25)  # type: ignore[attr-defined]  # what OverloadPenalty calls
    assert lb.algorithm.inflight(held) == 1
    lb.on_endpoints(EndpointSet(tuple(e for e in eps if e != held)))
    assert lb.algorithm.inflight(held) == 1
    lb.put(held, 0.01, False, Outcome.OK, 200)
    assert lb.algorithm.inflight(held) == 0 and lb.status().inflight == 0


def test_off_with_the_policy(clock: FakeClock, rng: random.Random) -> None:
    """EndpointPolicy.default(overload_penalty=False): a 429 changes nothing."""
    lb, eps = balancer(4, clock, rng, policy=EndpointPolicy.default(overload_penalty=False))
    overloaded(lb, eps[0], 10.0)
    assert lb.status().penalized == {}
    assert 0.15 < share(lb, eps[0]) < 0.35


def test_custom_load_and_bad_options(clock: FakeClock, rng: random.Random) -> None:
    """A small load only tilts the balance; bad options are named."""
    penalty = OverloadPenalty(load=1)
    lb, eps = balancer(4, clock, rng, policy=EndpointPolicy.default(overload=penalty))
    overloaded(lb, eps[0], 10.0)
    assert 0.02 < share(lb, eps[0]) < 0.2
    with pytest.raises(ConfigurationError, match="OverloadPenalty load must be an int >= 1, not 0"):
        OverloadPenalty(load=0)
    with pytest.raises(ConfigurationError, match="OverloadPenalty default_retry_after must be a finite"):
        OverloadPenalty(default_retry_after=0)
    fail(lb, eps[1], 1, Outcome.OVERLOADED)
    assert eps[1].key in penalty.penalized


def outrun(lb: LoadBalancer, ep: Endpoint, times: int = 1) -> None:
    """Report ``times`` attempts on ``ep`` that a hedge outran (put() as SLOW, the time waited)."""
    for _ in range(times):
        lb.put(ep, 0.2, False, Outcome.SLOW)


@pytest.mark.parametrize("algorithm", ["least_request", "peak_ewma"])
def test_a_pod_a_hedge_outran_gets_almost_nothing_for_slow_time(
    algorithm: str, clock: FakeClock, rng: random.Random
) -> None:
    """An attempt a hedge outran penalises its endpoint as a 429 without Retry-After (5 s):
    it gets almost nothing, then its fair share again once the time is up."""
    lb, eps = balancer(4, clock, rng, algorithm=algorithm)
    outrun(lb, eps[0])
    assert lb.status().penalized == {eps[0].key: clock() + 5.0}
    assert share(lb, eps[0]) < 0.02
    clock.advance(4.9)
    outrun(lb, eps[0])  # outrun again: the penalty runs 5 s from now
    assert lb.status().penalized == {eps[0].key: clock() + 5.0}
    clock.advance(5.0)
    ok(lb, eps[1])
    assert lb.status().penalized == {}
    if algorithm == "least_request":
        assert 0.15 < share(lb, eps[0]) < 0.35
    else:  # peak_ewma also took the 200 ms each outrun attempt had waited: it decays back slowly
        assert lb.algorithm.ewma(eps[0]) > 0.1  # type: ignore[attr-defined]


def test_slow_time_sets_or_turns_off_the_hedge_penalty(clock: FakeClock, rng: random.Random) -> None:
    """slow_time=2.0 penalises for 2 s (a 429's time unchanged); None: an outrun attempt changes
    nothing; a bad value is named."""
    lb, eps = balancer(4, clock, rng, policy=EndpointPolicy.default(overload=OverloadPenalty(slow_time=2.0)))
    outrun(lb, eps[0])
    overloaded(lb, eps[1], None)
    assert lb.status().penalized == {eps[0].key: clock() + 2.0, eps[1].key: clock() + 5.0}
    off = OverloadPenalty(slow_time=None)
    lb, eps = balancer(4, clock, rng, policy=EndpointPolicy.default(overload=off))
    outrun(lb, eps[0], 3)
    assert lb.status().penalized == {} and 0.15 < share(lb, eps[0]) < 0.35
    assert repr(off) == "OverloadPenalty(load=25, slow_time=None, penalized=0)"
    for bad in (0, -1.0, float("inf"), "5s", True):
        with pytest.raises(ConfigurationError, match=f"OverloadPenalty slow_time must be .* not {bad!r}"):
            OverloadPenalty(slow_time=bad)  # type: ignore[arg-type]


def test_an_outrun_attempt_is_no_failure(clock: FakeClock, rng: random.Random) -> None:
    """SLOW is neutral to outlier ejection (the pod answered nothing wrong) and tells the
    algorithm no failure: ten in a row eject nothing."""
    lb, eps = balancer(4, clock, rng)
    outrun(lb, eps[0], 10)
    assert not lb.status().ejected and eps[0] in lb.eligible
    assert not Outcome.SLOW.failed and not Outcome.SLOW.local_origin
    assert lb.status().outcomes == {"slow": 10} and lb.status().inflight == 0


@settings(max_examples=200, deadline=None)
@given(
    slow_time=st.none()
    | st.floats(allow_nan=True)
    | st.integers(-3, 3)
    | st.text(max_size=3)
    | st.booleans(),
)
def test_any_slow_time_builds_a_penalty_or_names_the_option(slow_time: Any) -> None:
    """Fuzzed slow_time: None (off), a finite number of seconds > 0 (kept as a float), or a
    ConfigurationError naming the option and the value."""
    try:
        penalty = OverloadPenalty(slow_time=slow_time)
    except ConfigurationError as exc:
        message = str(exc)
    else:
        assert penalty.slow_time is None or (0 < penalty.slow_time < float("inf"))
        assert slow_time is None or (not isinstance(slow_time, bool) and penalty.slow_time == slow_time)
        return
    assert message.startswith("OverloadPenalty slow_time must be a finite number of seconds > 0")
    assert repr(slow_time) in message
