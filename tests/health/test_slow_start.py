"""Slow start: a new endpoint's weight ramps from 10% to full over the window (Envoy's formula),
through the weight-factor hook that least_request and the weighted algorithms honour."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from helpers_health import balancer, endpoints, ok

from kube_balance import ConfigurationError, Endpoint, EndpointPolicy, EndpointSet, LoadBalancer, Outcome
from kube_balance._slow_start import SlowStart
from kube_balance.testing import FakeClock


def ramped(
    clock: FakeClock, rng: random.Random, algorithm: str, window: float = 60.0
) -> tuple[LoadBalancer, list[Endpoint]]:
    """3 endpoints from the start, then a 4th added at ``clock()`` (the one that ramps)."""
    eps = endpoints(4)
    policy = EndpointPolicy.default(slow_start=SlowStart(window))
    lb, _first = balancer(3, clock, rng, algorithm=algorithm, policy=policy)
    lb.on_endpoints(EndpointSet(tuple(eps)))
    return lb, eps


def share(lb: LoadBalancer, ep: Endpoint, picks: int = 4000, held: int = 0) -> float:
    """``ep``'s share of ``picks`` picks, ``held`` requests kept in flight meanwhile."""
    inflight: list[Endpoint] = []
    seen: Counter[str] = Counter()
    for _ in range(picks):
        picked = lb.get()
        assert picked is not None
        seen[picked.key] += 1
        inflight.append(picked)
        if len(inflight) > held:
            lb.unget(inflight.pop(0))
    for done in inflight:
        lb.unget(done)
    return seen[ep.key] / picks


def test_ramp_shape() -> None:
    """Linear with aggression 1 from a 10% floor; aggression 2 is a square root; 1.0 after the window."""
    linear = SlowStart(100)
    assert [linear.factor(t) for t in (0, 5, 10, 50, 99, 100, 500)] == [0.1, 0.1, 0.1, 0.5, 0.99, 1.0, 1.0]
    assert SlowStart(100, aggression=2).factor(25) == pytest.approx(0.5)
    assert SlowStart(100, min_weight_percent=30).factor(20) == pytest.approx(0.3)


def test_first_endpoints_do_not_ramp(clock: FakeClock, rng: random.Random) -> None:
    """The endpoints of the first snapshot get full weight at once; an added one ramps."""
    lb, eps = ramped(clock, rng, "weighted_random")
    assert lb.status().slow_start == {eps[3].key: 0.1}


@pytest.mark.parametrize("algorithm", ["weighted_random", "weighted_round_robin"])
def test_share_follows_the_ramp(algorithm: str, clock: FakeClock, rng: random.Random) -> None:
    """Share = factor / (3 + factor): ~3% at first, ~14% at half the window, 25% after it; outcomes advance it."""
    lb, eps = ramped(clock, rng, algorithm)
    assert share(lb, eps[3]) == pytest.approx(0.1 / 3.1, abs=0.01)
    clock.advance(30)
    ok(lb, eps[0])  # the ramp advances on the next outcome
    assert lb.status().slow_start == {eps[3].key: pytest.approx(0.5)}
    assert share(lb, eps[3]) == pytest.approx(0.5 / 3.5, abs=0.015)
    clock.advance(30)
    ok(lb, eps[0])
    assert lb.status().slow_start == {}
    assert share(lb, eps[3]) == pytest.approx(0.25, abs=0.015)


def test_least_request_under_load(clock: FakeClock, rng: random.Random) -> None:
    """least_request compares (in flight + 1) / (weight x factor): the new endpoint's share grows."""
    lb, eps = ramped(clock, rng, "least_request")
    shares = []
    for _ in range(3):
        shares.append(share(lb, eps[3], picks=2000, held=20))
        clock.advance(30)
        ok(lb, eps[0])
    assert shares[0] < 0.08 < shares[1] < 0.2 < shares[2] < 0.3, shares


def test_an_ejected_endpoint_ramps_again_on_return(clock: FakeClock, rng: random.Random) -> None:
    """Back from an ejection, an endpoint is new to the steps after outlier ejection: it ramps."""
    lb, eps = ramped(clock, rng, "least_request", window=10)
    clock.advance(10)
    ok(lb, eps[0])
    assert lb.status().slow_start == {}
    for _ in range(5):
        lb.put(eps[1], 0.01, True, Outcome.CONNECT_FAILED)
    assert list(lb.status().ejected) == [eps[1].key]
    clock.advance(40)
    ok(lb, eps[0])
    assert lb.status().slow_start == {eps[1].key: 0.1}


def test_off_by_default(clock: FakeClock, rng: random.Random) -> None:
    """Without SlowStart in the policy a new endpoint takes its full share at once."""
    lb, _eps = balancer(3, clock, rng, algorithm="weighted_random")
    lb.on_endpoints(EndpointSet(tuple(endpoints(4))))
    assert lb.status().slow_start == {}
    assert share(lb, endpoints(4)[3]) == pytest.approx(0.25, abs=0.015)


def test_algorithms_without_weights_ignore_it(clock: FakeClock, rng: random.Random) -> None:
    """round_robin takes no weights: the ramp is reported but the share is even."""
    lb, eps = ramped(clock, rng, "round_robin")
    assert lb.status().slow_start == {eps[3].key: 0.1}
    assert share(lb, eps[3]) == 0.25


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 0}, "SlowStart window must be a finite number of seconds > 0, not 0"),
        ({"window": 10, "aggression": 0}, r"SlowStart aggression must be a number in \[0.01, 100.0\], not 0"),
        (
            {"window": 10, "min_weight_percent": 0},
            r"SlowStart min_weight_percent must be a number in \[1.0, 100.0\]",
        ),
    ],
)
def test_bad_options_are_named(options: dict[str, float], message: str) -> None:
    """Bad options raise ConfigurationError naming them."""
    with pytest.raises(ConfigurationError, match=message):
        SlowStart(**options)
