"""Quiet health steps: an OK outcome calls the outlier and 429-penalty steps only while they have
something to do for it (a failure counted, an ejection or a penalty running, a success-rate window).
Every other outcome always reaches them."""

from __future__ import annotations

import random
from typing import Any

import pytest
from helpers_health import balancer, fail, ok

from kube_balance import EndpointPolicy, LoadBalancer, Outcome
from kube_balance._outlier import OutlierDetector, SuccessRate
from kube_balance._penalty import OverloadPenalty
from kube_balance.testing import FakeClock

Calls = dict[str, list[Outcome]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The outcomes each step's observer is called with (the real observer still runs)."""
    heard: Calls = {"outlier": [], "penalty": []}
    for name, cls in (("outlier", OutlierDetector), ("penalty", OverloadPenalty)):
        real = cls._observe

        def observe(
            self: Any, ep: Any, el: Any, outcome: Outcome, *rest: Any, _n: str = name, _r: Any = real
        ) -> None:
            heard[_n].append(outcome)
            _r(self, ep, el, outcome, *rest)

        monkeypatch.setattr(cls, "_observe", observe)
    return heard


def taken(calls: Calls) -> tuple[list[Outcome], list[Outcome]]:
    """The calls so far, cleared."""
    out = (list(calls["outlier"]), list(calls["penalty"]))
    calls["outlier"].clear()
    calls["penalty"].clear()
    return out


OK, CF, SE, OVER = Outcome.OK, Outcome.CONNECT_FAILED, Outcome.SERVER_ERROR, Outcome.OVERLOADED


def test_a_healthy_service_calls_no_step_on_success(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """The default policy: 100 OK outcomes call neither step; a failure calls both."""
    lb, eps = balancer(4, clock, rng)
    ok(lb, eps[0], 100)
    assert taken(calls) == ([], [])
    fail(lb, eps[1], 1, Outcome.CANCELLED)  # neutral for both, and still heard
    assert taken(calls) == ([Outcome.CANCELLED], [Outcome.CANCELLED])


def test_a_counted_failure_wakes_the_outlier_step_until_a_success(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """After a failure the next OK of any endpoint reaches the outlier step; the OK of the failed
    endpoint resets its count, and the step is quiet again."""
    lb, eps = balancer(4, clock, rng)
    fail(lb, eps[0], 2)
    ok(lb, eps[1])  # suspect load lasts: still awake
    clock.advance(1.0)  # the suspect time is over
    ok(lb, eps[1])  # ends the suspicion, eps[0]'s count stays
    ok(lb, eps[1])
    assert taken(calls) == ([CF, CF, OK, OK, OK], [CF, CF])
    ok(lb, eps[0])  # resets the count: quiet from here
    ok(lb, eps[0], 3)
    assert taken(calls) == ([OK], [])
    fail(lb, eps[0], 4)  # a fresh count: four failures do not eject
    assert eps[0] in lb.eligible


def test_without_suspect_load_the_count_alone_keeps_it_awake(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """suspect_load=0: a counted failure keeps the step awake (its count needs the reset)."""
    detector = OutlierDetector(suspect_load=0)
    lb, eps = balancer(4, clock, rng, policy=EndpointPolicy.default(outlier=detector, panic_threshold=0))
    fail(lb, eps[0], 4)
    ok(lb, eps[1], 2)
    ok(lb, eps[0])
    ok(lb, eps[0], 2)
    assert taken(calls)[0] == [CF] * 4 + [OK] * 3
    fail(lb, eps[0], 4)
    assert eps[0] in lb.eligible  # the reset happened: four more do not eject


def test_a_server_error_uncounted_settles_a_local_failure(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """count_server_errors=False: a 5xx after a connection failure is an answer: nothing is left to
    reset, and the step goes quiet; counted, the 5xx keeps it awake."""
    for counted, expected in ((False, [CF, SE]), (True, [CF, SE, OK])):
        detector = OutlierDetector(suspect_load=0, count_server_errors=counted)
        policy = EndpointPolicy.default(outlier=detector, panic_threshold=0, overload_penalty=False)
        lb, eps = balancer(4, clock, rng, policy=policy)
        fail(lb, eps[0])
        fail(lb, eps[0], 1, SE)
        ok(lb, eps[1])
        assert taken(calls)[0] == expected, counted


def test_a_5xx_uncounted_keeps_the_probation(calls: Calls, clock: FakeClock, rng: random.Random) -> None:
    """An endpoint back from an ejection stays on probation through an uncounted 5xx: the step
    stays awake until its first success."""
    detector = OutlierDetector(suspect_load=0, count_server_errors=False, jitter=0)
    policy = EndpointPolicy.default(outlier=detector, panic_threshold=0, overload_penalty=False)
    lb, eps = balancer(10, clock, rng, policy=policy)
    fail(lb, eps[0], 5)
    clock.advance(30)
    lb.refresh()  # back, on probation
    fail(lb, eps[0], 1, SE)
    ok(lb, eps[1])
    ok(lb, eps[0])  # the probation ends
    ok(lb, eps[0])
    assert taken(calls)[0] == [CF] * 5 + [SE, OK, OK]


def test_awake_while_ejected_and_on_probation(calls: Calls, clock: FakeClock, rng: random.Random) -> None:
    """An ejection keeps the step awake (an OK of another endpoint may return it); back on
    probation, it stays awake until the returned endpoint's first success."""
    detector = OutlierDetector(suspect_load=0, jitter=0)
    lb, eps = balancer(10, clock, rng, policy=EndpointPolicy.default(outlier=detector, panic_threshold=0))
    fail(lb, eps[0], 5)
    assert eps[0] not in lb.eligible
    ok(lb, eps[1])
    clock.advance(30)
    ok(lb, eps[1])  # returns eps[0], on probation
    assert eps[0] in lb.eligible
    ok(lb, eps[1])
    ok(lb, eps[0])  # its first success ends the probation
    ok(lb, eps[0])
    assert taken(calls)[0] == [CF] * 5 + [OK] * 4


def test_a_return_by_status_or_refresh_wakes_it_too(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """An endpoint returned by status() or a policy run is on probation: the next OK is heard."""
    for read in (LoadBalancer.status, LoadBalancer.refresh):
        detector = OutlierDetector(suspect_load=0, jitter=0)
        policy = EndpointPolicy.default(outlier=detector, panic_threshold=0, overload_penalty=False)
        lb, eps = balancer(10, clock, rng, policy=policy)
        fail(lb, eps[0], 5)
        clock.advance(30)
        read(lb)
        ok(lb, eps[0])
        ok(lb, eps[0])
        assert taken(calls)[0] == [CF] * 5 + [OK], read


def test_an_endpoint_leaving_takes_its_count_with_it(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """A failing endpoint that leaves the Service leaves nothing to reset: the step goes quiet."""
    detector = OutlierDetector(suspect_load=0)
    policy = EndpointPolicy.default(outlier=detector, panic_threshold=0, overload_penalty=False)
    lb, eps = balancer(4, clock, rng, policy=policy)
    fail(lb, eps[0], 2)
    from kube_balance import EndpointSet

    lb.on_endpoints(EndpointSet(tuple(eps[1:])))
    ok(lb, eps[1], 2)
    assert taken(calls)[0] == [CF, CF]


def test_a_success_rate_window_hears_every_success(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """With the success-rate rule the step counts every OK: never quiet."""
    detector = OutlierDetector(success_rate=SuccessRate())
    lb, eps = balancer(4, clock, rng, policy=EndpointPolicy.default(outlier=detector, panic_threshold=0))
    ok(lb, eps[0], 3)
    assert taken(calls) == ([OK] * 3, [])


def test_a_penalty_wakes_the_penalty_step_until_it_ends(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """A 429 makes every outcome reach the penalty step (it ends the penalty on time); once the
    penalty ended, an OK no longer does."""
    lb, eps = balancer(4, clock, rng)
    fail(lb, eps[0], 1, OVER, status=429, retry_after=2.0)
    ok(lb, eps[1])
    clock.advance(2.0)
    ok(lb, eps[1])  # ends the penalty
    ok(lb, eps[1], 2)
    assert taken(calls)[1] == [OVER, OK, OK]
    assert lb.status().penalized == {}


def test_a_penalty_ended_by_status_quiets_the_step(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """status() ends a penalty whose time is up: the next OK is not heard."""
    lb, eps = balancer(4, clock, rng)
    fail(lb, eps[0], 1, OVER, status=429, retry_after=2.0)
    fail(lb, eps[1], 1, OVER, status=429, retry_after=4.0)
    clock.advance(2.0)
    assert list(lb.status().penalized) == [eps[1].key]
    ok(lb, eps[2])  # one penalty left: heard
    clock.advance(2.0)
    assert lb.status().penalized == {}
    ok(lb, eps[2])
    assert taken(calls)[1] == [OVER, OVER, OK]


def test_an_unbound_penalty_tells_no_one(clock: FakeClock) -> None:
    """A penalty step used on its own (no balancer) still penalises and ends penalties."""
    step = OverloadPenalty(clock=clock)
    step.penalize("10.0.0.1:80", 1.0)
    assert step.penalized == {"10.0.0.1:80": clock() + 1.0}
    clock.advance(1.0)
    step._expire(clock())
    assert step.penalized == {}


def test_a_5xx_while_ejected_leaves_the_return_on_probation_until_its_first_success(
    calls: Calls, clock: FakeClock, rng: random.Random
) -> None:
    """A request in flight when its endpoint was ejected answers 500 (nothing left to reset,
    the endpoint counts as settled): on return it is on probation all the same, the step awake,
    so its first success is heard and ends the probation; a single failure after that ejects
    nothing."""
    detector = OutlierDetector(suspect_load=0, jitter=0)
    lb, eps = balancer(10, clock, rng, policy=EndpointPolicy.default(outlier=detector, panic_threshold=0))
    fail(lb, eps[0], 5)
    assert eps[0] not in lb.eligible
    fail(lb, eps[0], 1, SE, status=500)
    clock.advance(30)
    ok(lb, eps[1])  # returns eps[0], on probation
    assert eps[0] in lb.eligible
    ok(lb, eps[0])  # its first success ends the probation
    fail(lb, eps[0])  # one failure: counted, not an ejection
    assert eps[0] in lb.eligible and not lb.status().ejected
    assert taken(calls)[0] == [CF] * 5 + [SE, OK, OK, CF]
