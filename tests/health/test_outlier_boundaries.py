"""Outlier ejection at its edges: the defaults, exact times, the success-rate rule's thresholds, the
share cap, option bounds, the ejection counter, and whose clock and rng an ejection uses."""

from __future__ import annotations

import random

import pytest
from helpers_health import detector_lb, ejection_durations, fail, ok, phantom, rate_lb, window

from kube_balance import ConfigurationError, EndpointSet, Outcome
from kube_balance._outlier import OutlierDetector, SuccessRate
from kube_balance.testing import FakeClock


def test_default_times_grow_by_30_s_up_to_300_s(clock: FakeClock, rng: random.Random) -> None:
    """Defaults: 30 s, then 30 s more for each ejection in a row, capped at 300 s."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    assert ejection_durations(lb, clock, eps, 11) == [30.0 * t for t in range(1, 11)] + [300.0]


@pytest.mark.parametrize(("n", "most"), [(10, 1), (19, 1), (20, 2), (29, 2), (30, 3)])
def test_default_share_is_ten_percent(n: int, most: int, clock: FakeClock, rng: random.Random) -> None:
    """By default at most 10% of the endpoints are ejected at once (rounded down, at least one)."""
    lb, eps, detector = detector_lb(n, clock, rng)
    for ep in eps:
        fail(lb, ep, 5)
    assert detector.max_ejected() == most == len(lb.status().ejected)
    assert len(lb.eligible) == n - most


@pytest.mark.parametrize(("n", "percent", "most"), [(20, 9.9, 1), (20, 0, 1), (5, 100, 5), (3, 100, 3)])
def test_share_bounds(n: int, percent: float, most: int, clock: FakeClock, rng: random.Random) -> None:
    """9.9% of 20 is 1.98: one; 0% still allows one; 100% allows every endpoint."""
    lb, eps, detector = detector_lb(n, clock, rng, max_ejection_percent=percent)
    for ep in eps:
        fail(lb, ep, 5)
    assert detector.max_ejected() == most == len(lb.status().ejected)


def test_return_and_suspect_end_exactly_on_time(clock: FakeClock, rng: random.Random) -> None:
    """An ejection ends at its ``until`` and the phantom load at ``suspect_time`` after the last
    failure: an outcome at that very instant returns the one and takes back the other."""
    lb, eps, detector = detector_lb(10, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    fail(lb, eps[1], 1)
    assert phantom(lb, eps[1]) == 5
    clock.advance(1.0)
    ok(lb, eps[2])
    assert phantom(lb, eps[1]) == 0
    clock.advance(29.0)
    assert clock() == detector.ejected[eps[0].key].until  # (status() would return it)
    ok(lb, eps[2])
    assert eps[0] in lb.eligible and lb.status().ejected == {}


def test_a_5xx_ends_a_run_of_local_origin_failures(clock: FakeClock, rng: random.Random) -> None:
    """A 5xx answer shows the connection works: the local-origin count starts again after it."""
    lb, eps, _ = detector_lb(10, clock, rng, consecutive_local_origin_failures=2)
    fail(lb, eps[0], 1, Outcome.RESET)
    fail(lb, eps[0], 1, Outcome.SERVER_ERROR, status=500)
    fail(lb, eps[0], 1, Outcome.RESET)
    assert eps[0] in lb.eligible
    fail(lb, eps[0], 1, Outcome.RESET)
    assert lb.status().ejected[eps[0].key].reason == "2 consecutive local-origin failures (last: reset)"


def test_an_uncounted_5xx_takes_the_phantom_load_back(clock: FakeClock, rng: random.Random) -> None:
    """count_server_errors=False: a 5xx is an answer, like a success: the suspect load goes."""
    lb, eps, _ = detector_lb(4, clock, rng, count_server_errors=False)
    fail(lb, eps[0], 2)
    assert phantom(lb, eps[0]) == 10
    fail(lb, eps[0], 1, Outcome.SERVER_ERROR, status=500)
    assert phantom(lb, eps[0]) == 0


def test_an_endpoint_back_in_the_service_starts_afresh(clock: FakeClock, rng: random.Random) -> None:
    """An endpoint that left and came back has no ejection history and no phantom load left."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    fail(lb, eps[1], 2)
    assert phantom(lb, eps[1]) == 10
    lb.on_endpoints(EndpointSet(tuple(eps[2:])))
    lb.on_endpoints(EndpointSet(tuple(eps)))
    assert eps[0] in lb.eligible and phantom(lb, eps[1]) == 0
    clock.advance(5)
    ok(lb, eps[2])
    ok(lb, eps[1])
    assert phantom(lb, eps[1]) == 0
    fail(lb, eps[0], 4)
    assert eps[0] in lb.eligible
    fail(lb, eps[0])
    assert lb.status().ejected[eps[0].key].times == 1


def test_ejections_are_counted(clock: FakeClock, rng: random.Random) -> None:
    """``ejections`` (and the policy's report, which metrics read) counts every ejection."""
    lb, eps, detector = detector_lb(10, clock, rng, jitter=0)
    assert detector.ejections == 0 == lb.policy.report().ejections
    fail(lb, eps[0], 5)
    assert detector.ejections == 1 == lb.policy.report().ejections
    clock.advance(30)
    ok(lb, eps[1])
    fail(lb, eps[0])
    assert detector.ejections == 2 == lb.policy.report().ejections


def test_ejected_is_a_copy_and_repr_counts_it(clock: FakeClock, rng: random.Random) -> None:
    """``ejected`` is a snapshot the caller may change; repr names the options and the count."""
    lb, eps, detector = detector_lb(10, clock, rng)
    fail(lb, eps[0], 5)
    ejected = detector.ejected
    assert list(ejected) == [eps[0].key] == list(lb.status().ejected)
    ejected.clear()
    assert list(detector.ejected) == [eps[0].key]
    assert repr(detector) == "OutlierDetector(consecutive_failures=5, base_ejection_time=30.0, ejected=1)"


def test_jitter_comes_from_the_given_rng(clock: FakeClock) -> None:
    """The jitter draws from the detector's rng if given, else the balancer's: the same seed, the
    same ejection times."""

    def until(detector_rng: random.Random | None, lb_rng: random.Random) -> float:
        lb, eps, _ = detector_lb(10, FakeClock(), lb_rng, rng=detector_rng)
        fail(lb, eps[0], 5)
        return lb.status().ejected[eps[0].key].until

    by_balancer = until(None, random.Random(7))
    assert by_balancer == until(None, random.Random(7)) != 30.0
    assert until(random.Random(7), random.Random(8)) == by_balancer
    assert until(random.Random(8), random.Random(7)) != by_balancer


def test_a_detector_keeps_its_own_clock(clock: FakeClock, rng: random.Random) -> None:
    """A clock given to the detector is used instead of the balancer's."""
    own = FakeClock(500)
    lb, eps, _ = detector_lb(10, clock, rng, clock=own, jitter=0)
    fail(lb, eps[0], 5)
    ejection = lb.status().ejected[eps[0].key]
    assert (ejection.since, ejection.until) == (500, 530)


# -- the success-rate rule --------------------------------------------------------------------
def test_success_rate_defaults_judge_five_hosts_of_100_every_10_s(
    clock: FakeClock, rng: random.Random
) -> None:
    """SuccessRate(): 5 hosts with 100 requests each are enough; the window closes at 10 s,
    not before; 0.6 against four at 1.0 is below mean - 1.9 stddev (0.616)."""
    lb, eps, _ = rate_lb(5, clock, rng)
    window(lb, eps, [0.6, 1, 1, 1, 1])
    clock.advance(9.5)
    ok(lb, eps[1])
    assert not lb.status().ejected
    clock.advance(0.5)
    ok(lb, eps[1])
    assert list(lb.status().ejected) == [eps[0].key]
    assert eps[0] not in lb.eligible


def test_success_rate_factor_spares_a_mild_outlier(clock: FakeClock, rng: random.Random) -> None:
    """With four hosts, 0.6 against three at 1.0 is above mean - 1.9 stddev (0.571): kept."""
    lb, eps, _ = rate_lb(4, clock, rng, success_rate=SuccessRate(minimum_hosts=4))
    window(lb, eps, [0.6, 1, 1, 1])
    clock.advance(10)
    ok(lb, eps[1])
    assert not lb.status().ejected


def test_success_rate_equal_rates_eject_nobody(clock: FakeClock, rng: random.Random) -> None:
    """Every host equally good (stddev 0): nobody is below the mean."""
    lb, eps, _ = rate_lb(5, clock, rng)
    window(lb, eps, [1, 1, 1, 1, 1])
    clock.advance(10)
    ok(lb, eps[1])
    assert not lb.status().ejected


def test_success_rate_ejects_the_worst_first_under_the_cap(clock: FakeClock, rng: random.Random) -> None:
    """Two hosts below the threshold (0.519), room for one: the worse one goes, the other stays."""
    lb, eps, _ = rate_lb(11, clock, rng, max_ejection_percent=10)
    window(lb, eps, [1] * 9 + [0.5, 0.45])
    clock.advance(10)
    ok(lb, eps[0])
    assert list(lb.status().ejected) == [eps[10].key]
    assert eps[9] in lb.eligible and eps[10] not in lb.eligible


def test_success_rate_ejection_again_lasts_longer(clock: FakeClock, rng: random.Random) -> None:
    """An endpoint ejected by the success-rate rule again, soon after its return, is ejected for
    twice the base time: its history is kept."""
    lb, eps, _ = rate_lb(5, clock, rng, jitter=0)
    window(lb, eps, [0.6, 1, 1, 1, 1])
    clock.advance(10)
    ok(lb, eps[1])  # ejected at 10 s until 40 s; a new window began
    assert lb.status().ejected[eps[0].key].times == 1
    clock.advance(30)
    ok(lb, eps[1])  # returned at 40 s; the window of 20..30 s closed empty
    assert eps[0] in lb.eligible
    window(lb, eps, [0.6, 1, 1, 1, 1])  # a success first: off probation
    clock.advance(10)
    ok(lb, eps[1])
    ejection = lb.status().ejected[eps[0].key]
    assert ejection.times == 2 and ejection.until - ejection.since == 60.0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("interval", 0),
        ("request_volume", 0),
        ("minimum_hosts", 0),
        ("stdev_factor", -0.5),
        ("stdev_factor", 100.5),
    ],
)
def test_success_rate_bad_options_are_named(option: str, value: float) -> None:
    """SuccessRate checks its options at construction, naming the one that is wrong."""
    with pytest.raises(ConfigurationError, match=f"SuccessRate {option} must be"):
        SuccessRate(**{option: value})  # type: ignore[arg-type]


def test_option_bounds_are_inclusive() -> None:
    """The edges of each range are allowed: max == base time, jitter 0 and 1, percent 0 and 100,
    suspect_load 0, stdev_factor 0 and 100; just outside is refused."""
    assert OutlierDetector(base_ejection_time=30, max_ejection_time=30).max_ejection_time == 30
    assert OutlierDetector(jitter=0).jitter == 0 and OutlierDetector(jitter=1).jitter == 1
    assert OutlierDetector(max_ejection_percent=0).max_ejection_percent == 0
    assert OutlierDetector(max_ejection_percent=100).max_ejection_percent == 100
    assert OutlierDetector(suspect_load=0).suspect_load == 0
    assert SuccessRate(stdev_factor=0).stdev_factor == 0 and SuccessRate(stdev_factor=100).stdev_factor == 100
    for option, value in [("jitter", -0.1), ("max_ejection_percent", -1), ("suspect_load", -1)]:
        with pytest.raises(ConfigurationError, match=f"OutlierDetector {option} must be"):
            OutlierDetector(**{option: value})  # type: ignore[arg-type]


def test_success_rate_needs_five_hosts_by_default(clock: FakeClock, rng: random.Random) -> None:
    """With a factor low enough to judge four hosts, four are still too few by default."""
    lb, eps, _ = rate_lb(4, clock, rng, success_rate=SuccessRate(stdev_factor=1.0))
    window(lb, eps, [0.6, 1, 1, 1])
    clock.advance(10)
    ok(lb, eps[1])
    assert not lb.status().ejected


def test_a_success_takes_back_only_the_failure_load(clock: FakeClock, rng: random.Random) -> None:
    """After the failure load timed out, a success leaves the 429 penalty's share exactly as it is."""
    lb, eps, _ = detector_lb(4, clock, rng)
    lb.put(eps[0], 0.001, False, Outcome.OVERLOADED, 429, 2.0)
    fail(lb, eps[0])
    assert phantom(lb, eps[0]) == 25 + 5
    clock.advance(1.0)
    ok(lb, eps[1])
    assert phantom(lb, eps[0]) == 25
    ok(lb, eps[0])
    assert phantom(lb, eps[0]) == 25
